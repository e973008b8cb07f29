//! Any bytes given to the key decoder (what a KV Connect server receives
//! from clients): a key or a typed error, never a panic; a decoded key
//! re-encodes to bytes that decode to the same key, and encoding preserves
//! order between two decoded keys.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (a, b) = data.split_at(data.len() / 2);
    let (Ok(ka), Ok(kb)) = (kv_core::Key::decode(a), kv_core::Key::decode(b)) else {
        if let Ok(k) = kv_core::Key::decode(data) {
            let bytes = k.encode().expect("a decoded key encodes");
            assert_eq!(kv_core::Key::decode(&bytes).expect("re-encoded"), k);
        }
        return;
    };
    let (ea, eb) = (ka.encode().expect("encodes"), kb.encode().expect("encodes"));
    assert_eq!(kv_core::Key::decode(&ea).expect("re-encoded"), ka);
    assert_eq!(ea.cmp(&eb), ka.cmp(&kb), "byte order differs from key order");
});
