//! Where a database's keys live in etcd's flat key space.

/// The etcd keys of one database under prefix `P`: values at `P/d/<key>`,
/// the commit marker at `P/c`.
#[derive(Clone, Debug)]
pub(crate) struct Keyspace {
    data: Vec<u8>,
    marker: Vec<u8>,
}

impl Keyspace {
    pub(crate) fn new(prefix: &str) -> Self {
        let mut data = prefix.as_bytes().to_vec();
        let mut marker = data.clone();
        data.extend_from_slice(b"/d/");
        marker.extend_from_slice(b"/c");
        Keyspace { data, marker }
    }

    /// The etcd key holding `key`'s value.
    pub(crate) fn data_key(&self, key: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + key.len());
        out.extend_from_slice(&self.data);
        out.extend_from_slice(key);
        out
    }

    /// The kv key stored at etcd key `etcd_key`, if it is one of ours.
    pub(crate) fn user_key<'a>(&self, etcd_key: &'a [u8]) -> Option<&'a [u8]> {
        etcd_key.strip_prefix(self.data.as_slice())
    }

    /// The commit marker, written by every commit.
    pub(crate) fn marker(&self) -> &[u8] {
        &self.marker
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_both_ways() {
        let ks = Keyspace::new("app/kv");
        let k = ks.data_key(&[0x02, b'a', 0x00]);
        assert_eq!(k, b"app/kv/d/\x02a\x00");
        assert_eq!(ks.user_key(&k), Some(&[0x02, b'a', 0x00][..]));
        assert_eq!(ks.user_key(b"app/kv/c"), None);
        assert_eq!(ks.marker(), b"app/kv/c");
        assert_eq!(ks.data_key(&[]), b"app/kv/d/");
    }
}
