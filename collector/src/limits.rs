//! Size limits on what the receivers accept.

/// Limits on request sizes, shared by the gRPC and HTTP receivers.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body accepted on the wire (compressed).
    pub max_body_bytes: usize,
    /// Largest request after decompression (also the largest gRPC message).
    pub max_decoded_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 16 * 1024 * 1024,
            max_decoded_bytes: 64 * 1024 * 1024,
        }
    }
}
