//! Email receiver: SMTP through lettre with STARTTLS, implicit TLS or (for a local relay)
//! none, with optional authentication; a multipart text + HTML message.

use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::attempt::{Attempt, ID_HEADER, Integration, Outcome, clip};
use crate::config::{EmailConfig, SmtpTls};
use crate::error::NotifyError;
use crate::message::Notification;

#[derive(Debug)]
pub struct Email {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
}

impl Email {
    /// Builds the receiver (reads its password and CA files).
    ///
    /// # Errors
    /// [`NotifyError::Config`] naming what cannot be used.
    pub fn new(c: &EmailConfig) -> Result<Self, NotifyError> {
        Self::build(c).map_err(NotifyError::Config)
    }

    fn build(c: &EmailConfig) -> Result<Self, String> {
        let (host, port) = c.host_port()?;
        let tls = match c.tls {
            SmtpTls::None => Tls::None,
            mode => {
                let mut params = TlsParameters::builder(host.clone());
                if let Some(p) = &c.ca_file {
                    let pem = std::fs::read(p)
                        .map_err(|e| format!("cannot read ca_file {}: {e}", p.display()))?;
                    let cert = Certificate::from_pem(&pem)
                        .map_err(|e| format!("ca_file {}: {e}", p.display()))?;
                    params = params.add_root_certificate(cert);
                }
                let params = params
                    .build_rustls()
                    .map_err(|e| format!("TLS setup for {host}: {e}"))?;
                if mode == SmtpTls::Tls {
                    Tls::Wrapper(params)
                } else {
                    Tls::Required(params)
                }
            }
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .tls(tls)
            .timeout(Some(c.timeout));
        if let Some(h) = &c.hello {
            b = b.hello_name(ClientId::Domain(h.clone()));
        }
        if let Some(user) = &c.username {
            let password = match (&c.password, &c.password_file) {
                (Some(p), _) => p.clone(),
                (None, Some(f)) => std::fs::read_to_string(f)
                    .map_err(|e| format!("cannot read password_file {}: {e}", f.display()))?
                    .trim_end_matches(['\n', '\r'])
                    .to_string(),
                (None, None) => String::new(),
            };
            b = b.credentials(Credentials::new(user.clone(), password));
        }
        let parse = |a: &str| {
            a.parse::<Mailbox>()
                .map_err(|e| format!("{a:?} is not an email address: {e}"))
        };
        Ok(Self {
            transport: b.build(),
            from: parse(&c.from)?,
            to: c.to.iter().map(|a| parse(a)).collect::<Result<_, _>>()?,
        })
    }

    fn message(&self, n: &Notification) -> Result<Message, String> {
        let mut m = Message::builder()
            .from(self.from.clone())
            .subject(n.subject())
            .message_id(Some(format!("<{}@sightline>", n.id)))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str(ID_HEADER),
                n.id.clone(),
            ));
        for to in &self.to {
            m = m.to(to.clone());
        }
        m.multipart(MultiPart::alternative_plain_html(
            n.text_body(),
            n.html_body(),
        ))
        .map_err(|e| e.to_string())
    }
}

#[async_trait::async_trait]
impl Integration for Email {
    fn kind(&self) -> &'static str {
        "email"
    }

    async fn send(&self, n: &Notification) -> Attempt {
        let msg = match self.message(n) {
            Ok(m) => m,
            Err(e) => return Attempt::new(Outcome::Permanent, None, Some(e), None),
        };
        match self.transport.send(msg).await {
            Ok(r) => Attempt::new(
                Outcome::Delivered,
                Some(i64::from(u16::from(r.code()))),
                None,
                None,
            ),
            Err(e) => {
                let code = e.status().map(|c| i64::from(u16::from(c)));
                // 5xx replies, and client-side failures such as no common authentication
                // mechanism: trying again would fail the same way.
                let outcome = if e.is_permanent() || e.is_client() {
                    Outcome::Permanent
                } else {
                    Outcome::Retryable
                };
                let m = sightline_common::error::chain(&e);
                Attempt::new(outcome, code, Some(clip(&m)), None)
            }
        }
    }
}
