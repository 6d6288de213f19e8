//! The messages the SIP benchmarks parse and answer.

/// A typical INVITE as a softphone sends it: 12 headers and an audio SDP offer.
pub const INVITE: &[u8] = b"INVITE sip:1001@192.0.2.10:5060 SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.20:5062;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
To: <sip:1001@192.0.2.10>\r\n\
From: \"Alice\" <sip:1000@192.0.2.10>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:1000@192.0.2.20:5062;transport=udp>\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE, REFER, NOTIFY, MESSAGE, INFO, UPDATE\r\n\
Supported: replaces, timer\r\n\
User-Agent: ExamplePhone/1.2.3\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 238\r\n\
\r\n\
v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 192.0.2.20\r\n\
s=-\r\n\
c=IN IP4 192.0.2.20\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=sendrecv\r\n";

/// The 200 OK answering it.
pub const OK_200: &[u8] = b"SIP/2.0 200 OK\r\n\
Via: SIP/2.0/UDP 192.0.2.20:5062;branch=z9hG4bK776asdhds;rport=5062;received=192.0.2.20\r\n\
To: <sip:1001@192.0.2.10>;tag=a6c85cf\r\n\
From: \"Alice\" <sip:1000@192.0.2.10>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:1001@192.0.2.30:5064>\r\n\
Allow: INVITE, ACK, CANCEL, OPTIONS, BYE\r\n\
Server: ferroswitch/0.1.0\r\n\
Content-Length: 0\r\n\
\r\n";
