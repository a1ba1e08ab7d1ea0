//! `vouch tpm …`: quote checking, MakeCredential and EK certificates without a TPM, and EK /
//! AK / quote against a live one — all in tpm2-tools 5.x file formats.

use crate::input;
use anyhow::{bail, Context, Result};
use clap::{Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::SystemTime;
use vouch_core::credential::{make_credential, Credential};
use vouch_core::ekcert::{verify_ek_cert, EkCaStore};
use vouch_core::quote::verify_quote;
use vouch_core::tools::{read_pcr_file, write_pcr_file};
use vouch_core::tpm::{HashAlg, Name, PcrSelection, PcrValues, Signature};
use vouch_tpm::{Ak, AkKind, BlockingTpm, EkKind, Tcti, Tpm};

#[derive(Debug, Subcommand)]
pub enum TpmCommand {
    /// Verify a quote made by tpm2_quote (or `vouch tpm quote`); prints the verified PCRs.
    Checkquote {
        /// AK public key: TPM2B_PUBLIC (tpm2_readpublic -o; attributes checked) or PEM/DER.
        #[arg(long, short = 'u')]
        public: PathBuf,
        /// TPMS_ATTEST (tpm2_quote -m).
        #[arg(long, short = 'm')]
        message: PathBuf,
        /// TPMT_SIGNATURE (tpm2_quote -s).
        #[arg(long, short = 's')]
        signature: PathBuf,
        /// PCR values (tpm2_quote -o).
        #[arg(long, short = 'f')]
        pcrs: PathBuf,
        /// The nonce the quote must carry: hex, or a file.
        #[arg(long, short = 'q')]
        qualification: String,
        /// PCRs the quote must cover, tpm2-tools syntax (sha1:0,1+sha256:10,16).
        #[arg(long, short = 'l')]
        pcr_list: Option<String>,
    },
    /// Software TPM2_MakeCredential: output for tpm2_activatecredential -i.
    Makecredential {
        /// EK public area (TPM2B_PUBLIC, e.g. tpm2_createek -u / tpm2_readpublic -o).
        #[arg(long, short = 'e')]
        ek_public: PathBuf,
        /// Name of the key to credential (the AK): hex, or a file (tpm2_createak -n).
        #[arg(long, short = 'n')]
        name: String,
        /// File holding the secret (at most the EK name algorithm's digest size).
        #[arg(long, short = 's')]
        secret: PathBuf,
        #[arg(long, short = 'o')]
        output: PathBuf,
    },
    /// Check an EK certificate against a directory of CA certificates.
    VerifyEkCert {
        /// EK certificate, DER (as read from TPM NV) or PEM.
        #[arg(long)]
        cert: PathBuf,
        #[arg(long, env = "VOUCH_EK_CA_DIR")]
        ca_dir: PathBuf,
        /// Also check that the certificate's key is this EK (TPM2B_PUBLIC).
        #[arg(long)]
        ek_public: Option<PathBuf>,
    },
    /// Show a TPM2B_PUBLIC (Name, attributes) and convert it to PEM or DER for other tools.
    Readpublic {
        /// TPM2B_PUBLIC file.
        #[arg(long, short = 'u')]
        public: PathBuf,
        #[arg(long, short = 'f', value_enum, default_value_t = KeyFormat::Pem)]
        format: KeyFormat,
        /// Where to write the converted key; nothing is written without it.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
    },
    /// Create the EK of a live TPM; write its public area and certificate.
    Ek {
        #[command(flatten)]
        tpm: TpmArgs,
        #[arg(long, value_enum, default_value_t = EkAlg::Rsa)]
        algorithm: EkAlg,
        /// Where to write the EK public area (TPM2B_PUBLIC).
        #[arg(long, short = 'u')]
        public: PathBuf,
        /// Where to write the EK certificate (DER) from NV, if the TPM has one.
        #[arg(long)]
        cert: Option<PathBuf>,
    },
    /// Create an AK (restricted signing key) under the EK of a live TPM.
    Createak {
        #[command(flatten)]
        tpm: TpmArgs,
        #[arg(long, value_enum, default_value_t = EkAlg::Rsa)]
        ek: EkAlg,
        #[arg(long, short = 'G', value_enum, default_value_t = AkAlg::Rsa)]
        algorithm: AkAlg,
        #[arg(long, short = 'g', default_value = "sha256", value_parser = parse_hash)]
        hash: HashAlg,
        /// TPM2B_PUBLIC of the AK (tpm2-tools' -u format).
        #[arg(long, short = 'u')]
        public: PathBuf,
        /// TPM2B_PRIVATE of the AK (tpm2-tools' -r format).
        #[arg(long, short = 'r')]
        private: PathBuf,
        /// The AK's Name, binary (tpm2_createak -n format).
        #[arg(long, short = 'n')]
        name: Option<PathBuf>,
    },
    /// Quote PCRs with an AK made by `vouch tpm createak`; writes tpm2_quote's three files.
    Quote {
        #[command(flatten)]
        tpm: TpmArgs,
        #[command(flatten)]
        ak: AkFiles,
        #[arg(long, short = 'l')]
        pcr_list: String,
        /// Nonce (qualifying data): hex, or a file.
        #[arg(long, short = 'q')]
        qualification: String,
        #[arg(long, short = 'm')]
        message: PathBuf,
        #[arg(long, short = 's')]
        signature: PathBuf,
        #[arg(long, short = 'o')]
        pcrs: PathBuf,
    },
    /// TPM2_ActivateCredential on a live TPM (RSA and ECC EKs) with an AK from `createak`.
    Activatecredential {
        #[command(flatten)]
        tpm: TpmArgs,
        #[command(flatten)]
        ak: AkFiles,
        /// tpm2_makecredential / `vouch tpm makecredential` output.
        #[arg(long, short = 'i')]
        credential: PathBuf,
        #[arg(long, short = 'o')]
        output: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct TpmArgs {
    /// TCTI of the TPM: swtpm:host=127.0.0.1,port=2321 | device:/dev/tpmrm0 | tabrmd.
    #[arg(long, short = 'T', env = "VOUCH_TCTI")]
    tcti: Option<String>,
}

impl TpmArgs {
    fn open(&self) -> Result<BlockingTpm> {
        let tcti = match &self.tcti {
            Some(t) => t
                .parse::<Tcti>()
                .with_context(|| format!("bad TCTI {t:?}"))?,
            None => Tcti::from_env().context("no --tcti given and none in the environment")?,
        };
        Ok(Tpm::open(&tcti)?.blocking())
    }
}

#[derive(Debug, clap::Args)]
pub struct AkFiles {
    #[arg(long)]
    ak_public: PathBuf,
    #[arg(long)]
    ak_private: PathBuf,
    /// Algorithm of the EK the AK was created under.
    #[arg(long, value_enum, default_value_t = EkAlg::Rsa)]
    ek: EkAlg,
}

impl AkFiles {
    fn load(&self) -> Result<Ak> {
        let public = input::tpm_public(&self.ak_public)?;
        let private = input::read(&self.ak_private)?;
        let name = public.name();
        Ok(Ak {
            public,
            private,
            name,
            parent: self.ek.kind(),
        })
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum EkAlg {
    /// RSA-2048 (TCG template L-1)
    Rsa,
    /// ECC NIST P-256 (TCG template L-2)
    Ecc,
    /// ECC NIST P-384 (the EK swtpm_setup certifies)
    EccP384,
}

impl EkAlg {
    fn kind(self) -> EkKind {
        match self {
            EkAlg::Rsa => EkKind::Rsa2048,
            EkAlg::Ecc => EkKind::EccP256,
            EkAlg::EccP384 => EkKind::EccP384,
        }
    }
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum KeyFormat {
    /// SubjectPublicKeyInfo, PEM (tpm2_readpublic -f pem)
    Pem,
    /// SubjectPublicKeyInfo, DER (tpm2_readpublic -f der)
    Der,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum AkAlg {
    Rsa,
    Ecc,
}

fn parse_hash(s: &str) -> Result<HashAlg, String> {
    HashAlg::from_name(s)
        .ok_or_else(|| format!("unknown hash {s:?} (sha1, sha256, sha384, sha512)"))
}

pub fn run(cmd: TpmCommand) -> Result<()> {
    match cmd {
        TpmCommand::Checkquote {
            public,
            message,
            signature,
            pcrs,
            qualification,
            pcr_list,
        } => checkquote(
            &public,
            &message,
            &signature,
            &pcrs,
            &qualification,
            pcr_list.as_deref(),
        ),
        TpmCommand::Makecredential {
            ek_public,
            name,
            secret,
            output,
        } => {
            let ek = input::tpm_public(&ek_public)?;
            let name = Name::from_bytes(&input::hex_or_file(&name, "name")?).context("--name")?;
            let secret = input::read(&secret)?;
            let cred = make_credential(&ek, &name, &secret).context("MakeCredential")?;
            input::write(&output, &cred.to_tpm2_tools_file())
        }
        TpmCommand::VerifyEkCert {
            cert,
            ca_dir,
            ek_public,
        } => {
            let store = EkCaStore::from_dir(&ca_dir)?;
            let ek = ek_public.as_deref().map(input::tpm_public).transpose()?;
            let der = input::read(&cert)?;
            let v = verify_ek_cert(&der, &store, ek.as_ref(), SystemTime::now())
                .with_context(|| format!("{}", cert.display()))?;
            println!("EK certificate OK: {}", v.id());
            println!(
                "  chains to: {} ({} certificate(s) in the path)",
                v.anchor(),
                v.chain_len()
            );
            if let (Some(m), Some(model), Some(ver)) =
                (v.tpm_manufacturer(), v.tpm_model(), v.tpm_version())
            {
                println!("  TPM: manufacturer {m}, model {model}, version {ver}");
            }
            if v.key_matched() {
                println!("  certificate key matches the EK public area");
            }
            Ok(())
        }
        TpmCommand::Readpublic {
            public,
            format,
            output,
        } => {
            let p = input::tpm_public(&public)?;
            println!("{} name {}", p.describe(), hex::encode(p.name().as_bytes()));
            let a = p.attributes;
            println!(
                "attributes 0x{:08x} (restricted: {}, sign: {}, decrypt: {})",
                a.0,
                a.restricted(),
                a.sign(),
                a.decrypt()
            );
            if let Some(out) = output {
                let der = vouch_core::der::spki(&p).context("public area holds no key")?;
                let bytes = match format {
                    KeyFormat::Pem => vouch_core::der::pem_encode("PUBLIC KEY", &der).into_bytes(),
                    KeyFormat::Der => der,
                };
                input::write(&out, &bytes)?;
            }
            Ok(())
        }
        TpmCommand::Ek {
            tpm,
            algorithm,
            public,
            cert,
        } => {
            let tpm = tpm.open()?;
            let ek = tpm.create_ek(algorithm.kind())?;
            input::write(&public, &ek.to_tpm2b())?;
            println!("EK {} written to {}", ek.describe(), public.display());
            if let Some(path) = cert {
                match tpm.read_ek_cert(algorithm.kind())? {
                    Some(der) => {
                        input::write(&path, &der)?;
                        println!(
                            "EK certificate ({} bytes) written to {}",
                            der.len(),
                            path.display()
                        );
                    }
                    None => bail!(
                        "the TPM has no EK certificate for {} at NV 0x{:08x}",
                        ek.describe(),
                        algorithm.kind().cert_nv_index()
                    ),
                }
            }
            Ok(())
        }
        TpmCommand::Createak {
            tpm,
            ek,
            algorithm,
            hash,
            public,
            private,
            name,
        } => {
            let kind = match algorithm {
                AkAlg::Rsa => AkKind::Rsa2048,
                AkAlg::Ecc => AkKind::EccP256,
            };
            let ak = tpm.open()?.create_ak(ek.kind(), kind, hash)?;
            input::write(&public, &ak.public.to_tpm2b())?;
            input::write(&private, &ak.private)?;
            if let Some(n) = name {
                input::write(&n, ak.name.as_bytes())?;
            }
            println!(
                "AK {} name {}",
                ak.public.describe(),
                hex::encode(ak.name.as_bytes())
            );
            Ok(())
        }
        TpmCommand::Quote {
            tpm,
            ak,
            pcr_list,
            qualification,
            message,
            signature,
            pcrs,
        } => {
            let ak = ak.load()?;
            let selection: PcrSelection = pcr_list.parse().context("--pcr-list")?;
            let nonce = input::hex_or_file(&qualification, "qualification")?;
            let banks: Vec<(HashAlg, Vec<u8>)> = selection
                .banks()
                .iter()
                .map(|b| (b.hash(), b.indexes().collect()))
                .collect();
            let out = tpm.open()?.quote(&ak, &nonce, &banks)?;
            let mut values = PcrValues::new();
            for (bank, index, value) in out.pcrs {
                values.insert(bank, index, value)?;
            }
            input::write(&message, &out.attest)?;
            input::write(&signature, &out.signature)?;
            input::write(&pcrs, &write_pcr_file(&selection, &values)?)?;
            println!("quote of {selection} written to {}", message.display());
            Ok(())
        }
        TpmCommand::Activatecredential {
            tpm,
            ak,
            credential,
            output,
        } => {
            let ak = ak.load()?;
            let cred = Credential::from_tpm2_tools_file(&input::read(&credential)?)
                .with_context(|| format!("{}", credential.display()))?;
            let secret =
                tpm.open()?
                    .activate_credential(&ak, cred.id_object(), cred.encrypted_secret())?;
            input::write(&output, &secret)?;
            println!(
                "credential activated: {} bytes written to {}",
                secret.len(),
                output.display()
            );
            Ok(())
        }
    }
}

fn checkquote(
    public: &std::path::Path,
    message: &std::path::Path,
    signature: &std::path::Path,
    pcrs: &std::path::Path,
    qualification: &str,
    pcr_list: Option<&str>,
) -> Result<()> {
    let ak = input::verifying_key(public)?;
    let attest = input::read(message)?;
    let sig_bytes = input::read(signature)?;
    let sig = Signature::from_bytes(&sig_bytes)
        .with_context(|| format!("{}: not a TPMT_SIGNATURE", signature.display()))?;
    let (_, values) = read_pcr_file(&input::read(pcrs)?)
        .with_context(|| format!("{}: not a tpm2-tools PCR file", pcrs.display()))?;
    let nonce = input::hex_or_file(qualification, "qualification")?;
    let required = match pcr_list {
        Some(l) => l.parse::<PcrSelection>().context("--pcr-list")?,
        None => PcrSelection::new(vec![]).context("empty selection")?,
    };
    let q =
        verify_quote(&ak, &attest, &sig, &values, &nonce, &required).context("quote rejected")?;
    if !q.ak_attributes_checked() {
        eprintln!(
            "warning: {} is a bare public key, so the AK's TPM attributes (restricted, sign) were not checked; \
             pass the TPM2B_PUBLIC (tpm2_readpublic -o) for the full check",
            public.display()
        );
    }
    println!(
        "verified: quote signed by {} over {}",
        ak.describe(),
        q.selection()
    );
    println!(
        "clock: {} resetCount: {} restartCount: {} safe: {}",
        q.clock(),
        q.reset_count(),
        q.restart_count(),
        q.safe()
    );
    println!("pcrs:");
    let mut bank = None;
    for (alg, index, value) in q.pcrs().iter() {
        if bank != Some(alg) {
            println!("  {alg}:");
            bank = Some(alg);
        }
        println!("    {index:<2} : 0x{}", hex::encode_upper(value));
    }
    Ok(())
}
