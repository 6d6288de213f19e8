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

/// Every named header (tests check each resolves from its long form).
#[cfg(test)]
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

/// Each token character mapped to its lower-case form; every other byte to 0.
static LOWER_TOKEN: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        if super::grammar::TOKEN[c] {
            t[c] = (c as u8).to_ascii_lowercase();
        }
        c += 1;
    }
    t
};

/// The longest known header name ("proxy-authorization").
const LONGEST: usize = 19;

impl HeaderName {
    /// Reads a header line's name up to its colon in one pass (token check, lower-casing
    /// and lookup together). Returns the name, its length, and the offset just after the
    /// colon; `None` if the name is not a token or no colon follows it (HCOLON allows
    /// SP/HTAB before the colon).
    pub fn read_line_name(line: &[u8]) -> Option<(HeaderName, usize, usize)> {
        // One table lookup per byte gives both the class check and the lower-case form.
        let mut buf = [0u8; 32];
        let n = line.len().min(buf.len());
        let mut i = 0;
        while i < n {
            let l = LOWER_TOKEN[line[i] as usize];
            if l == 0 {
                break;
            }
            buf[i] = l;
            i += 1;
        }
        if i == buf.len() {
            while i < line.len() && LOWER_TOKEN[line[i] as usize] != 0 {
                i += 1;
            }
        }
        let len = i;
        if len == 0 {
            return None;
        }
        while i < line.len() && matches!(line[i], b' ' | b'\t') {
            i += 1;
        }
        if line.get(i) != Some(&b':') {
            return None;
        }
        let name = if len > LONGEST { HeaderName::Other } else { HeaderName::from_lowercase(&buf[..len]) };
        Some((name, len, i + 1))
    }

    /// Resolves a received header name (any case, long or compact form).
    pub fn from_bytes(name: &[u8]) -> HeaderName {
        if name.len() > LONGEST {
            return HeaderName::Other;
        }
        let mut buf = [0u8; LONGEST];
        for (d, s) in buf.iter_mut().zip(name) {
            *d = s.to_ascii_lowercase();
        }
        HeaderName::from_lowercase(&buf[..name.len()])
    }

    /// Resolves a lower-cased name with one `match`: the compiler dispatches on length
    /// and compares short names as machine words.
    fn from_lowercase(lower: &[u8]) -> HeaderName {
        use HeaderName::*;
        if lower.len() == 1 {
            return match lower[0] {
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
        match lower {
            b"via" => Via,
            b"from" => From,
            b"to" => To,
            b"call-id" => CallId,
            b"cseq" => CSeq,
            b"contact" => Contact,
            b"max-forwards" => MaxForwards,
            b"content-length" => ContentLength,
            b"content-type" => ContentType,
            b"route" => Route,
            b"record-route" => RecordRoute,
            b"authorization" => Authorization,
            b"proxy-authorization" => ProxyAuthorization,
            b"www-authenticate" => WwwAuthenticate,
            b"proxy-authenticate" => ProxyAuthenticate,
            b"expires" => Expires,
            b"min-expires" => MinExpires,
            b"allow" => Allow,
            b"supported" => Supported,
            b"require" => Require,
            b"proxy-require" => ProxyRequire,
            b"unsupported" => Unsupported,
            b"accept" => Accept,
            b"accept-encoding" => AcceptEncoding,
            b"accept-language" => AcceptLanguage,
            b"allow-events" => AllowEvents,
            b"content-disposition" => ContentDisposition,
            b"content-encoding" => ContentEncoding,
            b"date" => Date,
            b"event" => Event,
            b"refer-to" => ReferTo,
            b"referred-by" => ReferredBy,
            b"server" => Server,
            b"session-expires" => SessionExpires,
            b"subject" => Subject,
            b"user-agent" => UserAgent,
            b"warning" => Warning,
            _ => Other,
        }
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
        matches!(self, CallId | CSeq | From | To | MaxForwards | ContentLength | ContentType | Expires | MinExpires)
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
            assert_eq!(HeaderName::from_bytes(name), want, "{}", String::from_utf8_lossy(name));
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
