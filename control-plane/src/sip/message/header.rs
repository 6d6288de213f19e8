//! Header names: the ones the stack interprets, their compact forms (RFC 3261 §7.3.3
//! and later RFCs), and case-insensitive lookup.

/// A header name the stack knows, or `Other` (kept as received and never interpreted).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HeaderName {
    Accept,
    AcceptEncoding,
    AcceptLanguage,
    Allow,
    AllowEvents,
    Authorization,
    CallId,
    Contact,
    ContentDisposition,
    ContentEncoding,
    ContentLength,
    ContentType,
    CSeq,
    Date,
    Event,
    Expires,
    From,
    MaxForwards,
    MinExpires,
    ProxyAuthenticate,
    ProxyAuthorization,
    ProxyRequire,
    RecordRoute,
    ReferTo,
    ReferredBy,
    Require,
    Route,
    Server,
    SessionExpires,
    Subject,
    Supported,
    To,
    Unsupported,
    UserAgent,
    Via,
    Warning,
    WwwAuthenticate,
    Other,
}

/// Every named header, for lookup by name.
const ALL: &[HeaderName] = {
    use HeaderName::*;
    &[
        Via,
        From,
        To,
        CallId,
        CSeq,
        Contact,
        MaxForwards,
        ContentLength,
        ContentType,
        Route,
        RecordRoute,
        Authorization,
        ProxyAuthorization,
        WwwAuthenticate,
        ProxyAuthenticate,
        Expires,
        MinExpires,
        Allow,
        Supported,
        Require,
        ProxyRequire,
        Unsupported,
        Accept,
        AcceptEncoding,
        AcceptLanguage,
        AllowEvents,
        ContentDisposition,
        ContentEncoding,
        Date,
        Event,
        ReferTo,
        ReferredBy,
        Server,
        SessionExpires,
        Subject,
        UserAgent,
        Warning,
    ]
};

impl HeaderName {
    /// Resolves a received header name (any case, long or compact form).
    pub fn from_bytes(name: &[u8]) -> HeaderName {
        use HeaderName::*;
        if name.len() == 1 {
            return match name[0].to_ascii_lowercase() {
                b'i' => CallId,
                b'm' => Contact,
                b'e' => ContentEncoding,
                b'l' => ContentLength,
                b'c' => ContentType,
                b'f' => From,
                b's' => Subject,
                b'k' => Supported,
                b't' => To,
                b'v' => Via,
                b'o' => Event,
                b'r' => ReferTo,
                b'b' => ReferredBy,
                b'u' => AllowEvents,
                b'x' => SessionExpires,
                _ => Other,
            };
        }
        // Compare lengths first: a cheap filter before the case-insensitive compare.
        for &c in ALL {
            let s = c.as_str().as_bytes();
            if s.len() == name.len() && s.eq_ignore_ascii_case(name) {
                return c;
            }
        }
        Other
    }

    /// The canonical long form.
    pub fn as_str(self) -> &'static str {
        use HeaderName::*;
        match self {
            Accept => "Accept",
            AcceptEncoding => "Accept-Encoding",
            AcceptLanguage => "Accept-Language",
            Allow => "Allow",
            AllowEvents => "Allow-Events",
            Authorization => "Authorization",
            CallId => "Call-ID",
            Contact => "Contact",
            ContentDisposition => "Content-Disposition",
            ContentEncoding => "Content-Encoding",
            ContentLength => "Content-Length",
            ContentType => "Content-Type",
            CSeq => "CSeq",
            Date => "Date",
            Event => "Event",
            Expires => "Expires",
            From => "From",
            MaxForwards => "Max-Forwards",
            MinExpires => "Min-Expires",
            ProxyAuthenticate => "Proxy-Authenticate",
            ProxyAuthorization => "Proxy-Authorization",
            ProxyRequire => "Proxy-Require",
            RecordRoute => "Record-Route",
            ReferTo => "Refer-To",
            ReferredBy => "Referred-By",
            Require => "Require",
            Route => "Route",
            Server => "Server",
            SessionExpires => "Session-Expires",
            Subject => "Subject",
            Supported => "Supported",
            To => "To",
            Unsupported => "Unsupported",
            UserAgent => "User-Agent",
            Via => "Via",
            Warning => "Warning",
            WwwAuthenticate => "WWW-Authenticate",
            Other => "",
        }
    }

    /// Headers whose value is a comma-separated list (RFC 3261 §7.3.1), so that several
    /// header lines and one line with commas mean the same.
    pub fn is_list(self) -> bool {
        use HeaderName::*;
        matches!(
            self,
            Accept
                | AcceptEncoding
                | AcceptLanguage
                | Allow
                | AllowEvents
                | Contact
                | ContentEncoding
                | ProxyRequire
                | RecordRoute
                | Require
                | Route
                | Supported
                | Unsupported
                | Via
                | Warning
        )
    }

    /// Headers that may appear at most once (RFC 3261 §20, "single-valued").
    pub fn is_single(self) -> bool {
        use HeaderName::*;
        matches!(
            self,
            CallId
                | CSeq
                | From
                | To
                | MaxForwards
                | ContentLength
                | ContentType
                | Expires
                | MinExpires
        )
    }
}

#[cfg(test)]
mod tests {
    use super::HeaderName::{self, *};

    #[test]
    fn compact_and_long_forms_resolve_case_insensitively_rfc3261_7_3_3() {
        for (name, want) in [
            (&b"v"[..], Via),
            (b"V", Via),
            (b"vIA", Via),
            (b"i", CallId),
            (b"call-id", CallId),
            (b"l", ContentLength),
            (b"CONTENT-LENGTH", ContentLength),
            (b"m", Contact),
            (b"c", ContentType),
            (b"t", To),
            (b"f", From),
            (b"k", Supported),
            (b"cseq", CSeq),
            (b"MaX-fOrWaRdS", MaxForwards),
            (b"www-authenticate", WwwAuthenticate),
            (b"C%6Fntact", Other),
            (b"NewFangledHeader", Other),
        ] {
            assert_eq!(
                HeaderName::from_bytes(name),
                want,
                "{}",
                String::from_utf8_lossy(name)
            );
        }
    }

    #[test]
    fn every_long_form_round_trips() {
        assert_eq!(super::ALL.len(), HeaderName::Other as usize);
        for &h in super::ALL {
            assert_eq!(HeaderName::from_bytes(h.as_str().as_bytes()), h);
        }
    }
}
