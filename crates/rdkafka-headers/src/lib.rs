//! librdkafka message headers with byte keys, for the tests that check header fidelity.
//!
//! Kafka header keys are bytes on the wire, and librdkafka's C API takes and returns them as
//! such (a name with an explicit length; a NUL-terminated name back). The `rdkafka` crate's
//! header API takes `&str` keys and panics on reading a key that is not UTF-8, so a test could
//! neither write nor read one through it. These two functions call the C API directly.
//!
//! The only `unsafe` code of the workspace lives here; it runs in tests only (strait itself
//! never links librdkafka).

use std::ffi::{c_char, c_void, CStr};
use std::ptr;

use rdkafka::bindings::{
    rd_kafka_header_add, rd_kafka_header_cnt, rd_kafka_header_get_all, rd_kafka_headers_t, rd_kafka_message_headers,
};
use rdkafka::message::{BorrowedHeaders, BorrowedMessage, OwnedHeaders};
use rdkafka::types::RDKafkaRespErr;

/// One header: its key and its value (`None` is a null value, distinct from an empty one).
pub type Header = (Vec<u8>, Option<Vec<u8>>);

/// Headers for a producer record with exactly these keys and values, in order (duplicates
/// kept). Panics on a key with a NUL byte: librdkafka hands names back NUL-terminated, so such
/// a key could not be read back whole.
pub fn owned(headers: &[Header]) -> OwnedHeaders {
    let owned = OwnedHeaders::new_with_capacity(headers.len());
    // rdkafka keeps the native pointer private; its `BorrowedHeaders` is that pointer viewed as
    // a zero-sized type, which is how rdkafka itself passes it back to librdkafka.
    let native = owned.as_borrowed() as *const BorrowedHeaders as *mut rd_kafka_headers_t;
    for (key, value) in headers {
        assert!(!key.contains(&0), "header key {key:?} holds a NUL byte");
        let (value_ptr, value_len) = match value {
            Some(v) => (v.as_ptr().cast::<c_void>(), v.len() as isize),
            None => (ptr::null(), 0),
        };
        // SAFETY: `native` is the live, writable header list `owned` owns (created by
        // rd_kafka_headers_new and not yet handed to a producer); librdkafka copies the name
        // and the value, whose pointers and lengths come from live slices, before returning.
        let err = unsafe {
            rd_kafka_header_add(
                native,
                key.as_ptr().cast::<c_char>(),
                key.len() as isize,
                value_ptr,
                value_len,
            )
        };
        assert_eq!(err, RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR, "header not added");
    }
    owned
}

/// The headers of a consumed message as librdkafka parsed them, in order; empty when it has
/// none.
pub fn of(message: &BorrowedMessage<'_>) -> Vec<Header> {
    let mut native: *mut rd_kafka_headers_t = ptr::null_mut();
    // SAFETY: `message.ptr()` is the live message `message` borrows; librdkafka only writes the
    // address of the message's own header list into `native`.
    let err = unsafe { rd_kafka_message_headers(message.ptr(), &mut native) };
    if err != RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR || native.is_null() {
        return Vec::new();
    }
    // SAFETY: `native` is the message's header list, alive as long as `message`.
    let count = unsafe { rd_kafka_header_cnt(native) };
    (0..count)
        .map(|idx| {
            let (mut name, mut value, mut size): (*const c_char, *const c_void, usize) = (ptr::null(), ptr::null(), 0);
            // SAFETY: `idx` is below the count of the live list `native`; librdkafka writes
            // pointers into that list's own storage, which outlives this call.
            let err = unsafe { rd_kafka_header_get_all(native, idx, &mut name, &mut value, &mut size) };
            assert_eq!(err, RDKafkaRespErr::RD_KAFKA_RESP_ERR_NO_ERROR, "header {idx} missing");
            // SAFETY: librdkafka stores every name NUL-terminated, and a non-null value as
            // `size` bytes; both live as long as `message`, and are copied here at once.
            unsafe {
                let key = CStr::from_ptr(name).to_bytes().to_vec();
                let value = (!value.is_null()).then(|| std::slice::from_raw_parts(value.cast::<u8>(), size).to_vec());
                (key, value)
            }
        })
        .collect()
}
