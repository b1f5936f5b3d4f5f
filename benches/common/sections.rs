//! Named sections of a generated Markdown file, so that two benchmarks can share
//! `docs/benchmarks.md`: `benches/scale` writes the file, `benches/vm_scale.rs` writes one
//! section of it, and each keeps what the other wrote. A section is the text between
//! `<!-- begin NAME -->` and `<!-- end NAME -->`, markers included.

/// The section benches/vm_scale.rs writes: ipvlan at scale, in the VM.
#[allow(dead_code)]
pub const IPVLAN_VM: &str = "ipvlan-vm";

/// The opening and closing markers of section `name`.
fn markers(name: &str) -> (String, String) {
    (
        format!("<!-- begin {name} -->"),
        format!("<!-- end {name} -->"),
    )
}

/// Section `name` of `doc`, markers included; `None` when it has none (or an unclosed one).
#[allow(dead_code)] // each benchmark uses one of the two functions
pub fn section<'a>(doc: &'a str, name: &str) -> Option<&'a str> {
    let (begin, end) = markers(name);
    let start = doc.find(&begin)?;
    let stop = doc[start..].find(&end)? + start + end.len();
    Some(&doc[start..stop])
}

/// `doc` with section `name` holding `body` (between fresh markers): in place of the old one,
/// or appended after a blank line when there was none.
#[allow(dead_code)]
pub fn replace_section(doc: &str, name: &str, body: &str) -> String {
    let (begin, end) = markers(name);
    let new = format!("{begin}\n{}\n{end}", body.trim_end());
    match section(doc, name) {
        Some(old) => doc.replacen(old, &new, 1),
        None if doc.trim().is_empty() => format!("{new}\n"),
        None => format!("{}\n\n{new}\n", doc.trim_end()),
    }
}
