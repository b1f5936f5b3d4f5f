//! The daemon's Unix-socket protocol: frame reading with the size limit, then request decoding.
#![no_main]

use std::io::Cursor;

use cni_dhcp::rpc::{MAX_REQUEST_BYTES, decode_request, read_frame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = decode_request(data);
    // The daemon reads frames from a stream: every frame in the input, as it would.
    let mut cursor = Cursor::new(data);
    while let Ok(frame) = read_frame(&mut cursor, MAX_REQUEST_BYTES) {
        if let Ok(request) = decode_request(&frame) {
            let _ = request.version();
        }
    }
    // A small limit, to reach the too-large path.
    let _ = read_frame(&mut Cursor::new(data), 16);
});
