//! Wire formats of Fleetgate's PROV-V1 provisioning exchange (PROTOCOL.md section 4).
//!
//! This crate owns:
//! - the Eclipse Kura payload codec: hand-written prost messages in [`proto`] matching
//!   `kura/proto/kurapayload.proto`, and the [`Payload`] wrapper with typed metric getters;
//! - the PROV-V1 message model shared by the broker and the load tester: [`ProvRequest`] and
//!   [`ProvReply`], each in both encodings (a flat JSON object, or a KuraPayload), the encoding
//!   rule ([`Encoding::detect`]: a payload starting with `{` is JSON), the `request.id` rule
//!   ([`valid_request_id`]) and the PROV-V1 topic names ([`topics`]);
//! - the errors that tell the broker how to answer a bad request ([`RequestError`]);
//! - the request a Kura-native device makes by its BIRTH ([`ProvRequest::from_birth`],
//!   PROTOCOL.md 8.1).
//!
//! It must not do I/O, read clocks or hold broker state: decisions about provision requests,
//! activation keys and credentials belong to the broker. Decoding never panics, whatever the
//! bytes, and request payloads are bounded by [`MAX_REQUEST_LEN`].

mod error;
mod payload;
pub mod proto;
mod prov;

pub use error::{KuraError, RequestError};
pub use payload::Payload;
pub use prov::{
    Encoding, MAX_BIRTH_LEN, MAX_REQUEST_ID_LEN, MAX_REQUEST_LEN, PROVISION_STATUS_COMPLETED,
    ProvFailure, ProvReply, ProvRequest, ProvSuccess, decode_reply, decode_request, fields, topics,
    valid_request_id,
};

#[cfg(test)]
mod tests;
