//! The actor: one thread owns the TPM context; handles send it jobs.
//!
//! tss-esapi's `Context` is neither `Send` nor `Sync`, and a TPM runs one command at a time
//! anyway, so each opened TPM gets one owner thread. `TpmHandle` is a cloneable sender: its
//! async methods queue a job and await a oneshot reply; `BlockingTpm` does the same with a
//! blocking wait, for code without a runtime. Jobs run in arrival order. The thread ends
//! (flushing what it loaded) when the last handle is dropped.

use crate::device::Device;
use crate::error::TpmError;
use crate::keys::{Ak, AkKind, EkKind};
use crate::nv::NvAccess;
use crate::pcr::QuoteOutput;
use crate::tcti::Tcti;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use vouch_core::tpm::{HashAlg, Public};

type Job = Box<dyn FnOnce(&mut Device) + Send>;

/// Shared by all handles of one TPM. Dropping the last one closes the queue and waits for the
/// thread to flush what it loaded, so a test can stop swtpm right after without TCTI errors.
#[derive(Debug)]
struct Inner {
    tx: Option<mpsc::Sender<Job>>,
    thread: Option<JoinHandle<()>>,
}

impl Inner {
    fn send(&self, job: Job) -> Result<(), TpmError> {
        self.tx
            .as_ref()
            .ok_or(TpmError::Closed)?
            .send(job)
            .map_err(|_| TpmError::Closed)
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(thread) = self.thread.take() {
            if thread.thread().id() != std::thread::current().id() {
                let _ = thread.join();
            }
        }
    }
}

/// Opens TPM contexts.
pub struct Tpm;

impl Tpm {
    /// Connect to the TPM at `tcti` and start its owner thread. Returns once the context is
    /// open (a few ms), so connection errors surface here.
    pub fn open(tcti: &Tcti) -> Result<TpmHandle, TpmError> {
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), TpmError>>(1);
        let owned = tcti.clone();
        let thread = std::thread::Builder::new()
            .name(format!("tpm {tcti}"))
            .spawn(move || {
                let mut device = match Device::open(&owned) {
                    Ok(d) => {
                        let _ = ready_tx.send(Ok(()));
                        d
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = rx.recv() {
                    job(&mut device);
                }
                tracing::debug!(tcti = %owned, "last TPM handle dropped; closing the context");
            })
            .map_err(|e| TpmError::Connect {
                tcti: tcti.to_string(),
                detail: format!("could not start the TPM thread: {e}"),
            })?;
        ready_rx.recv().map_err(|_| TpmError::Closed)??;
        let inner = Arc::new(Inner {
            tx: Some(tx),
            thread: Some(thread),
        });
        Ok(TpmHandle {
            inner,
            tcti: tcti.clone(),
        })
    }

    /// [`Tpm::open`] with the TCTI from `VOUCH_TCTI` / `TPM2TOOLS_TCTI`.
    pub fn open_from_env() -> Result<TpmHandle, TpmError> {
        Self::open(&Tcti::from_env()?)
    }
}

/// A handle to a TPM owner thread. Clone it freely; it is `Send + Sync`.
#[derive(Clone, Debug)]
pub struct TpmHandle {
    inner: Arc<Inner>,
    tcti: Tcti,
}

/// The same operations as [`TpmHandle`], blocking the calling thread. Do not use it on an
/// async runtime's worker threads.
#[derive(Clone, Debug)]
pub struct BlockingTpm {
    inner: Arc<Inner>,
    tcti: Tcti,
}

impl TpmHandle {
    pub fn tcti(&self) -> &Tcti {
        &self.tcti
    }

    /// A blocking view of the same TPM thread.
    pub fn blocking(&self) -> BlockingTpm {
        BlockingTpm {
            inner: self.inner.clone(),
            tcti: self.tcti.clone(),
        }
    }

    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Device) -> Result<T, TpmError> + Send + 'static,
    ) -> Result<T, TpmError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.inner.send(Box::new(move |d| {
            let _ = tx.send(f(d));
        }))?;
        rx.await.map_err(|_| TpmError::Closed)?
    }
}

impl BlockingTpm {
    pub fn tcti(&self) -> &Tcti {
        &self.tcti
    }

    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Device) -> Result<T, TpmError> + Send + 'static,
    ) -> Result<T, TpmError> {
        let (tx, rx) = mpsc::sync_channel(1);
        self.inner.send(Box::new(move |d| {
            let _ = tx.send(f(d));
        }))?;
        rx.recv().map_err(|_| TpmError::Closed)?
    }
}

/// Both handles get the same operations; `$call` is `.await` for the async one.
macro_rules! operations {
    ($($async:ident)?; $($await:tt)*) => {
        /// Create the EK of `kind` from its TCG template (deterministic: the same key every
        /// time on one TPM) and return its public area.
        pub $($async)? fn create_ek(&self, kind: EkKind) -> Result<Public, TpmError> {
            self.call(move |d| d.create_ek(kind))$($await)*
        }

        /// The EK certificate (DER) from NV, trailing padding removed; `None` if the index is
        /// not defined. swtpm_setup certifies RSA-2048 and P-384 EKs, not P-256.
        pub $($async)? fn read_ek_cert(&self, kind: EkKind) -> Result<Option<Vec<u8>>, TpmError> {
            self.call(move |d| d.read_ek_cert(kind))$($await)*
        }

        /// Create an AK (restricted signing key) under the EK of `parent`.
        pub $($async)? fn create_ak(&self, parent: EkKind, kind: AkKind, hash: HashAlg) -> Result<Ak, TpmError> {
            self.call(move |d| d.create_ak(parent, kind, hash))$($await)*
        }

        /// Load `ak` now (quote and activate_credential load it on demand too); fails if the
        /// blobs were not made by this TPM's EK.
        pub $($async)? fn load_ak(&self, ak: &Ak) -> Result<(), TpmError> {
            let ak = ak.clone();
            self.call(move |d| d.ak_handle(&ak).map(|_| ()))$($await)*
        }

        /// Quote `selection` with `nonce` as qualifying data (at most 64 bytes).
        pub $($async)? fn quote(&self, ak: &Ak, nonce: &[u8], selection: &[(HashAlg, Vec<u8>)]) -> Result<QuoteOutput, TpmError> {
            let (ak, nonce, selection) = (ak.clone(), nonce.to_vec(), selection.to_vec());
            self.call(move |d| d.quote(&ak, &nonce, &selection))$($await)*
        }

        /// ActivateCredential with `ak` as the credentialed key and its EK as the decryption
        /// key; `id_object` / `encrypted_secret` are TPM2B contents (no size prefix).
        pub $($async)? fn activate_credential(&self, ak: &Ak, id_object: &[u8], encrypted_secret: &[u8]) -> Result<Vec<u8>, TpmError> {
            let (ak, id, secret) = (ak.clone(), id_object.to_vec(), encrypted_secret.to_vec());
            self.call(move |d| d.activate_credential(&ak, &id, &secret))$($await)*
        }

        /// Read PCRs: banks in the given order, indices ascending.
        pub $($async)? fn pcr_read(&self, selection: &[(HashAlg, Vec<u8>)]) -> Result<Vec<(HashAlg, u8, Vec<u8>)>, TpmError> {
            let selection = selection.to_vec();
            self.call(move |d| d.pcr_read_selection(&selection))$($await)*
        }

        /// Read one PCR.
        pub $($async)? fn pcr_read_one(&self, bank: HashAlg, index: u8) -> Result<Vec<u8>, TpmError> {
            self.call(move |d| {
                d.pcr_read_selection(&[(bank, vec![index])])?
                    .pop()
                    .map(|(_, _, v)| v)
                    .ok_or_else(|| TpmError::InvalidArgument(format!("PCR {bank}:{index} not readable")))
            })$($await)*
        }

        /// Extend PCR `index` with one digest per bank.
        pub $($async)? fn pcr_extend(&self, index: u8, digests: &[(HashAlg, Vec<u8>)]) -> Result<(), TpmError> {
            let digests = digests.to_vec();
            self.call(move |d| d.pcr_extend(index, &digests))$($await)*
        }

        /// Reset PCR `index` in every bank (resettable PCRs only, e.g. 16 and 23).
        pub $($async)? fn pcr_reset(&self, index: u8) -> Result<(), TpmError> {
            self.call(move |d| d.pcr_reset(index))$($await)*
        }

        /// Define an NV index of `size` bytes (owner hierarchy, empty owner auth; NO_DA).
        pub $($async)? fn nv_define(&self, index: u32, size: u16, access: NvAccess) -> Result<(), TpmError> {
            self.call(move |d| d.nv_define(index, size, access))$($await)*
        }

        /// Write `data` at offset 0.
        pub $($async)? fn nv_write(&self, index: u32, data: &[u8]) -> Result<(), TpmError> {
            let data = data.to_vec();
            self.call(move |d| d.nv_write(index, &data))$($await)*
        }

        /// The whole index, or `None` if it is not defined.
        pub $($async)? fn nv_read(&self, index: u32) -> Result<Option<Vec<u8>>, TpmError> {
            self.call(move |d| d.nv_read(index))$($await)*
        }

        pub $($async)? fn nv_undefine(&self, index: u32) -> Result<(), TpmError> {
            self.call(move |d| d.nv_undefine(index))$($await)*
        }
    };
}

impl TpmHandle {
    operations!(async; .await);
}

impl BlockingTpm {
    operations!(;);
}
