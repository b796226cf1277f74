//! Generated code for the `aiaa.<service>.v1` gRPC contracts (see `proto/aiaa`), and the
//! encoded descriptor set that every server registers for gRPC reflection, and the one framing
//! of streamed payloads ([`framed`]: a header message, then chunks).
#![allow(
    unused_qualifications,
    clippy::large_enum_variant,
    clippy::doc_lazy_continuation
)]

/// The encoded `FileDescriptorSet` of every contract, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/aiaa_descriptor.bin"));

/// Largest chunk of a streamed payload, in bytes (1 MiB).
pub const CHUNK_SIZE: usize = 1024 * 1024;

pub mod framed;

/// Types shared by every service.
pub mod common {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("aiaa.common.v1");
    }
}

/// The model catalogue.
pub mod registry {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("aiaa.registry.v1");
    }
}

/// Images, labels, datalists, sessions and conversion jobs.
pub mod datastore {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("aiaa.datastore.v1");
    }
}

/// The engine pool.
pub mod inference {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("aiaa.inference.v1");
    }
}

/// Training, export and evaluation jobs.
pub mod trainer {
    /// Version 1.
    pub mod v1 {
        tonic::include_proto!("aiaa.trainer.v1");
    }
}
