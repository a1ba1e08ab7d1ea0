//! TPM 2.0 structures (TPM 2.0 Library, Part 2), parsed strictly and marshalled back exactly.

pub mod alg;
pub mod attest;
pub mod pcr;
pub mod public;
pub mod signature;
pub mod wire;

pub use alg::HashAlg;
pub use attest::{Attest, Attested, CertifyInfo, ClockInfo, QuoteInfo};
pub use pcr::{BankSelection, PcrError, PcrSelection, PcrValues};
pub use public::{EccCurve, KdfScheme, Name, ObjectAttributes, Public, PublicKey, Scheme, SymDef};
pub use signature::Signature;
pub use wire::{Reader, WireError, WireReason, Writer};
