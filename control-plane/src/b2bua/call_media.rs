//! The B2BUA's side of a call's media, over the SDP work in [`super::media`]: asking the
//! media plane for a call's sessions and going on once they exist, following each SDP
//! the legs send (peers checked for NAT and loops, codecs for one in common), and the
//! media plane's answers and RTP timeouts.

use tracing::{info, warn};

use super::call::{Call, Cx, Side};
use super::channel::HangupCause;
use super::media::{self, CallMedia, MediaAnswer, MediaRequest, PeerCheck, Waiting};
use super::messages::respond_simple;
use super::routes::Relay;
use super::rows::call_row;
use super::{media_ip_of, LocalMedia};
use crate::media::negotiate::parse_codec_string;
use crate::media::rewrite::OwnMedia;
use crate::sdp::Sdp;
use crate::sip::message::{HeaderName, Message, Method};
use crate::sip::transaction::TxId;
use crate::sip::transport::Peer;
use crate::storage::Write;

/// What B's SDP gives A ([`Call::media_from_b`]).
pub(super) enum FromB {
    /// This SDP, pointed at the media plane.
    Sdp(Vec<u8>),
    /// Nothing: no SDP (or none that parses).
    Nothing,
    /// B picked a codec A did not offer, and nothing transcodes: never passed on.
    NoCommonCodec,
}

impl Call {
    /// Whether the call's media is to go through the media plane and is not there yet.
    pub fn want_media(&self, cx: &Cx<'_, '_>) -> bool {
        cx.routes.media.enabled && self.media.is_none() && self.vars.get("bypass_media") != Some("true")
    }

    /// Asks the media plane for the call's sessions; `waiting` goes on once they exist
    /// ([`Call::on_media_answer`]).
    pub fn request_media(&mut self, cx: &mut Cx<'_, '_>, waiting: Waiting) {
        let settings = &cx.routes.media;
        // A leg the switch dials (originate) made no offer: the switch makes its own.
        let body = self.a.setup.as_ref().map_or(&[][..], |s| s.invite.body());
        let offer = match (!body.is_empty()).then(|| Sdp::parse(body)) {
            None => None,
            Some(Ok(sdp)) if sdp.media.len() > settings.max_media => {
                warn!(call = %self.uuid, streams = sdp.media.len(), max = settings.max_media, "the caller's SDP has too many m= lines (sip.max_sdp_media)");
                self.hangup_a(cx, HangupCause::INCOMPATIBLE_DESTINATION, Some(488));
                return;
            }
            Some(Ok(sdp)) => Some(sdp),
            Some(Err(e)) => {
                warn!(call = %self.uuid, error = %e, "the caller's SDP does not parse");
                self.hangup_a(cx, HangupCause::INCOMPATIBLE_DESTINATION, Some(488));
                return;
            }
        };
        let ip = settings.rtp_ip.unwrap_or_else(|| media_ip_of(self.a.peer));
        let timeout =
            self.vars.get("rtp_timeout_sec").and_then(|v| v.parse().ok()).unwrap_or(settings.rtp_timeout_secs);
        let prefs = match self.vars.get("absolute_codec_string").map(parse_codec_string) {
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                warn!(call = %self.uuid, error = %e, "absolute_codec_string ignored");
                settings.prefs.clone()
            }
            None => settings.prefs.clone(),
        };
        let own_ports = settings.own_ports;
        let sources = [Some(self.a.peer.remote.ip()), None];
        let pc = PeerCheck { source: sources[0], own: OwnMedia { ip, ports: own_ports } };
        if let Some(why) = offer.as_ref().and_then(|a| media::refused_peer(a, &pc)) {
            warn!(call = %self.uuid, source = %self.a.peer.remote, error = %why, "the caller's SDP refused");
            self.hangup_a(cx, HangupCause::INCOMPATIBLE_DESTINATION, Some(488));
            return;
        }
        if waiting == Waiting::Bridge && offer.as_ref().is_some_and(|a| media::offer_without_common_codec(a, &prefs)) {
            warn!(call = %self.uuid, "the caller offered none of the switch's codecs, and nothing transcodes: 488");
            self.hangup_a(cx, HangupCause::INCOMPATIBLE_DESTINATION, Some(488));
            return;
        }
        let (mut specs, outgoing) = match (waiting, &offer) {
            (Waiting::Echo, Some(a)) => media::plan_answer(a, &prefs, timeout, true, &pc),
            (Waiting::Answer(_), Some(a)) => media::plan_answer(a, &prefs, timeout, false, &pc),
            _ => media::plan_bridge(offer.as_ref(), &prefs, timeout, &pc),
        };
        // FreeSWITCH's `dtmf_type=none`: no DTMF interworking when the call transcodes.
        if self.vars.get("dtmf_type").is_some_and(|t| t.eq_ignore_ascii_case("none")) {
            for spec in specs.iter_mut().flatten() {
                spec.flags |= ferroswitch_shared::msg::session_flags::NO_DTMF;
            }
        }
        let token = cx.routes.token();
        cx.routes.media_tokens.insert(token, cx.id);
        cx.routes.media_out.push_back(MediaRequest::Create { token, specs });
        self.media = Some(CallMedia {
            ip,
            sessions: Vec::new(),
            a_offer: offer,
            outgoing: Some(outgoing),
            to_b: Vec::new(),
            local: None,
            waiting: Some(waiting),
            timeout,
            to_a: None,
            sources,
            own_ports,
            prefs,
            reoffer: None,
        });
    }

    /// `answer`, `pre_answer` or `echo` (`what`) with the media plane: the caller gets the
    /// switch's own answer at the media plane's ports, once the sessions exist (Waiting),
    /// or at once when an earlier application made them (Done). Off: no media plane, no
    /// offer from the caller, or `bypass_media`.
    pub fn local_media(&mut self, cx: &mut Cx<'_, '_>, what: Waiting) -> LocalMedia {
        if self.media.as_ref().is_some_and(|m| m.local.is_none() && m.waiting.is_none()) {
            // The sessions were made for a bridge that failed (`continue_on_fail`): they go,
            // and the switch's own answer gets sessions of its own (answering the caller
            // with its own offer would have it send its media to itself).
            for session in self.media.take().iter().flat_map(CallMedia::ids) {
                cx.routes.media_calls.remove(&session);
                cx.routes.media_out.push_back(MediaRequest::Destroy { id: session, cdr: [None, None] });
            }
        }
        if let Some(m) = &mut self.media {
            let Some(body) = m.local.clone() else { return LocalMedia::Off };
            if what == Waiting::Echo {
                for (session, spec) in m.sessions.iter_mut().flatten() {
                    spec.flags |= ferroswitch_shared::msg::session_flags::ECHO;
                    cx.routes.media_out.push_back(MediaRequest::Update { id: *session, spec: *spec });
                }
            }
            match what {
                Waiting::Answer(183) => self.provisional_a(cx, 183, Some(body)),
                _ => self.answer_a(cx, Some(body)),
            }
            return LocalMedia::Done;
        }
        let offered = self.a.setup.as_ref().is_some_and(|s| !s.invite.body().is_empty());
        if !offered || !self.want_media(cx) {
            return LocalMedia::Off;
        }
        self.request_media(cx, what);
        LocalMedia::Waiting
    }

    /// A bridge after the switch answered A itself: B is offered what A was answered,
    /// at leg B's ports.
    pub fn offer_after_local_answer(&mut self) {
        let Some(m) = self.media.as_mut() else { return };
        if let (Some(_), Some(answered), true) = (&m.local, &m.outgoing, m.to_b.is_empty()) {
            let mut offer = answered.clone();
            media::point(&mut offer, &m.sessions, 1, m.ip);
            m.to_b = offer.write().into_bytes();
        }
    }

    /// B's SDP (in a 18x or 2xx to the INVITE of B-leg `i`): leg B's peer moves, and what
    /// A gets is returned. Without media, B's SDP as it is. An SDP that picked a codec A
    /// cannot be answered with (nothing in common, no transcoding) changes nothing.
    pub fn media_from_b(&mut self, cx: &mut Cx<'_, '_>, i: usize, msg: &Message) -> FromB {
        let b_source = self.forks.get(i).map(|f| f.peer.remote.ip());
        let Some(m) = self.media.as_mut() else { return FromB::Sdp(msg.body().to_vec()) };
        if msg.body().is_empty() {
            return FromB::Nothing;
        }
        let b = match Sdp::parse(msg.body()) {
            Ok(b) => b,
            Err(e) => {
                warn!(call = %self.uuid, error = %e, "the callee's SDP does not parse");
                return FromB::Nothing;
            }
        };
        if m.a_offer.as_ref().is_some_and(|a| media::answer_without_common_codec(a, &b)) {
            return FromB::NoCommonCodec;
        }
        m.sources[1] = b_source;
        if let Some(why) = media::refused_peer(&b, &m.check(1)) {
            // The leg gets no peer for that stream: nothing is sent there.
            warn!(call = %self.uuid, error = %why, "the callee's SDP names a refused media address");
        }
        let pc = m.check(1);
        let moved = media::follow(&mut m.sessions, &b, 1, m.timeout, &pc);
        let (to_a, updates) = match &m.a_offer {
            Some(a) => {
                let (answer, marked) = media::answer_for_a(a, &b, &mut m.sessions, m.ip);
                (answer, media::merge(moved, marked))
            }
            None => {
                // Late offer: B's answer is the switch's offer to A.
                let mut offer = b;
                media::point(&mut offer, &m.sessions, 0, m.ip);
                (offer, moved)
            }
        };
        cx.routes.media_out.extend(updates.into_iter().map(|(id, spec)| MediaRequest::Update { id, spec }));
        let body = to_a.write().into_bytes();
        m.to_a = Some(body.clone());
        FromB::Sdp(body)
    }

    /// SDP from leg `side` in an in-dialog message (re-offer, its answer, an ACK): that
    /// leg's peer moves, and the SDP pointed at the other leg's ports is returned. None:
    /// no media here, or no SDP; pass the body on as it is.
    pub fn media_body(&mut self, cx: &mut Cx<'_, '_>, side: Side, msg: &Message) -> Result<Option<Vec<u8>>, String> {
        let Some(m) = self.media.as_mut() else { return Ok(None) };
        let sdp_type = msg.header(HeaderName::ContentType).is_some_and(|ct| {
            let mime = ct.split(|&c| c == b';').next().unwrap_or_default();
            mime.trim_ascii().eq_ignore_ascii_case(b"application/sdp")
        });
        if msg.body().is_empty() || !sdp_type || m.waiting.is_some() {
            return Ok(None);
        }
        let sdp = Sdp::parse(msg.body()).map_err(|e| e.to_string())?;
        let max = cx.routes.media.max_media;
        if sdp.media.len() > max {
            return Err(format!("{} m= lines, at most {max} (sip.max_sdp_media)", sdp.media.len()));
        }
        let leg = if side == Side::A { 0 } else { 1 };
        if let Some(why) = media::refused_peer(&sdp, &m.check(leg)) {
            return Err(why.to_string());
        }
        let pc = m.check(leg);
        let mut updates = media::follow(&mut m.sessions, &sdp, leg, m.timeout, &pc);
        let offer = msg.is_request() && matches!(msg.method(), Method::Invite | Method::Update);
        let out = if offer {
            // Offered on with what the media plane can transcode to; its answer is mapped back.
            let mut out = sdp.clone();
            media::reoffer(&mut out, &m.prefs);
            media::point(&mut out, &m.sessions, 1 - leg, m.ip);
            m.reoffer = Some((leg, sdp));
            out
        } else if let Some((from, offered)) = m.reoffer.take_if(|(from, _)| *from != leg && !msg.is_request()) {
            let (out, more) = media::answer_to(&offered, &sdp, &mut m.sessions, from, m.ip);
            updates = media::merge(updates, more);
            out
        } else {
            let mut out = sdp;
            media::point(&mut out, &m.sessions, 1 - leg, m.ip);
            out
        };
        cx.routes.media_out.extend(updates.into_iter().map(|(id, spec)| MediaRequest::Update { id, spec }));
        Ok(Some(out.write().into_bytes()))
    }

    /// A re-offer with more streams than the call has sessions: asks for sessions for the
    /// new ones and keeps the request until they exist (true). False: nothing to wait for.
    pub fn media_for_added_streams(
        &mut self,
        cx: &mut Cx<'_, '_>,
        from: Side,
        tx: TxId,
        req: &Message,
        peer: Peer,
    ) -> bool {
        let Some(m) = self.media.as_mut() else { return false };
        if req.body().is_empty() || m.waiting.is_some() {
            return false;
        }
        let Ok(sdp) = Sdp::parse(req.body()) else { return false };
        if sdp.media.len() > cx.routes.media.max_media {
            return false; // refused with 488 by media_body
        }
        let known = m.sessions.len();
        if sdp.media.len() <= known {
            return false;
        }
        let leg = if from == Side::A { 0 } else { 1 };
        if media::refused_peer(&sdp, &m.check(leg)).is_some() {
            return false; // refused with 488 by media_body
        }
        let specs = media::plan_added(&sdp, known, leg, m.timeout, &m.check(leg));
        let token = cx.routes.token();
        cx.routes.media_tokens.insert(token, cx.id);
        cx.routes.media_out.push_back(MediaRequest::Create { token, specs });
        m.waiting = Some(Waiting::Reoffer);
        self.reoffer = Some(Relay { call: cx.id, from, server_tx: tx, request: req.clone(), peer });
        true
    }

    /// The media plane answered this call's [`MediaRequest::Create`] (the call is up and
    /// has media): what waited goes on (B-legs offered, the echo answered, a re-offer
    /// relayed), or the call fails with 503.
    pub fn on_media_answer(&mut self, cx: &mut Cx<'_, '_>, answer: MediaAnswer) {
        let Some(m) = self.media.as_mut() else { return };
        if m.waiting == Some(Waiting::Reoffer) {
            // The re-offer's new streams: their sessions join the call's, then it is relayed
            // (or refused with 488 without them).
            m.waiting = None;
            let Some(r) = self.reoffer.take() else { return };
            match answer.result {
                Ok(added) => {
                    for (session, _) in added.iter().flatten() {
                        cx.routes.media_calls.insert(*session, cx.id);
                    }
                    m.sessions.extend(added);
                    // The row names every session, for a restart.
                    if let Some(row) = call_row(self) {
                        cx.io.writes.push_back(Write::UpsertCall(row));
                    }
                    self.relay(cx, r.from, r.server_tx, &r.request, r.peer);
                }
                Err(why) => {
                    warn!(call = %self.uuid, %why, "no media session for the re-offer's new streams");
                    respond_simple(cx.io, r.server_tx, &r.request, r.peer, 488);
                }
            }
            return;
        }
        let sessions = match answer.result {
            Ok(s) => s,
            Err(why) => {
                warn!(call = %self.uuid, %why, "no media session: the call fails");
                self.media = None;
                self.hangup_a(cx, HangupCause::NORMAL_TEMPORARY_FAILURE, Some(503));
                return;
            }
        };
        for (session, _) in sessions.iter().flatten() {
            cx.routes.media_calls.insert(*session, cx.id);
        }
        m.sessions = sessions;
        let waiting = m.waiting.take();
        info!(call = %self.uuid, sessions = m.ids().count(), "media sessions ready");
        let Some(outgoing) = m.outgoing.as_mut() else { return };
        if waiting == Some(Waiting::Dial) {
            self.dial_with_media(cx);
            return;
        }
        if waiting == Some(Waiting::Bridge) {
            // B's offer goes out at leg B's ports.
            media::point(outgoing, &m.sessions, 1, m.ip);
            m.to_b = outgoing.write().into_bytes();
            self.start_group(cx);
            return;
        }
        // The switch's own answer, at leg A's ports.
        media::point(outgoing, &m.sessions, 0, m.ip);
        let body = outgoing.write().into_bytes();
        m.local = Some(body.clone());
        match waiting {
            Some(Waiting::Answer(183)) => {
                self.provisional_a(cx, 183, Some(body));
                self.run(cx);
            }
            Some(Waiting::Answer(_)) => {
                self.answer_a(cx, Some(body));
                self.run(cx);
            }
            _ => self.answer_a(cx, Some(body)),
        }
    }
}
