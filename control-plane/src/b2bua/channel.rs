//! FreeSWITCH's channel states and hangup causes (REFERENCE.md, "The channel state
//! machine"): every leg runs CS_NEW … CS_DESTROY through one transition function that
//! checks the move is one FreeSWITCH makes and logs it with the channel's UUID.

use std::fmt;

use tracing::info;

/// The channel states, named as FreeSWITCH names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
pub enum ChannelState {
    CS_NEW,
    CS_INIT,
    CS_ROUTING,
    CS_SOFT_EXECUTE,
    CS_EXECUTE,
    CS_EXCHANGE_MEDIA,
    CS_PARK,
    CS_CONSUME_MEDIA,
    CS_HIBERNATE,
    CS_RESET,
    CS_HANGUP,
    CS_REPORTING,
    CS_DESTROY,
}

impl fmt::Display for ChannelState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl ChannelState {
    /// Whether FreeSWITCH's core moves a channel from `self` to `to`: forward through
    /// the call, to CS_HANGUP from any live state, then CS_REPORTING and CS_DESTROY.
    pub fn can_move_to(self, to: ChannelState) -> bool {
        use ChannelState::*;
        match (self, to) {
            (CS_NEW, CS_INIT) | (CS_INIT, CS_ROUTING) => true,
            (CS_ROUTING, CS_EXECUTE | CS_CONSUME_MEDIA | CS_SOFT_EXECUTE | CS_PARK) => true,
            (CS_EXECUTE, CS_ROUTING) => true, // transfer: hunt again
            (CS_CONSUME_MEDIA, CS_EXCHANGE_MEDIA) => true,
            // An originated leg answered: its applications run, or its extension is hunted.
            (CS_CONSUME_MEDIA, CS_EXECUTE | CS_ROUTING) => true,
            (CS_HANGUP, CS_REPORTING) | (CS_REPORTING, CS_DESTROY) => true,
            (from, CS_HANGUP) => !matches!(from, CS_HANGUP | CS_REPORTING | CS_DESTROY),
            _ => false,
        }
    }
}

impl ChannelState {
    /// FreeSWITCH's number for the state (`Channel-State-Number`).
    pub fn number(self) -> u8 {
        self as u8
    }
}

/// A channel's call state (`Channel-Call-State`), named and numbered as FreeSWITCH does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
pub enum CallState {
    DOWN,
    DIALING,
    RINGING,
    EARLY,
    ACTIVE,
    HELD,
    RING_WAIT,
    HANGUP,
    UNHELD,
}

impl CallState {
    pub fn number(self) -> u8 {
        self as u8
    }
}

impl fmt::Display for CallState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// When things happened to a channel, in µs since the Unix epoch (0: not yet), as the
/// `Caller-Channel-*-Time` headers give them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Times {
    pub created: u64,
    pub progress: u64,
    pub progress_media: u64,
    pub answered: u64,
    pub bridged: u64,
    pub hangup: u64,
}

/// Which side of the switch a channel faces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// The caller's leg (the A-leg), created by an incoming INVITE.
    Inbound,
    /// A leg the switch originates (the B-leg), created by `bridge`.
    Outbound,
}

/// A channel: the state, and the transitions it went through (for tests and the CDR).
#[derive(Clone, Debug)]
pub struct Channel {
    pub uuid: String,
    pub direction: Direction,
    state: ChannelState,
    history: Vec<ChannelState>,
    pub cause: Option<HangupCause>,
    /// `sofia/internal/<user>@<host>`, as FreeSWITCH names a SIP channel.
    pub name: String,
    pub call_state: CallState,
    /// Early media was sent or received, and whether the leg was answered.
    pub early: bool,
    pub answered: bool,
    pub times: Times,
}

impl Channel {
    pub fn new(uuid: String, direction: Direction) -> Channel {
        info!(%uuid, ?direction, state = %ChannelState::CS_NEW, "channel created");
        Channel {
            uuid,
            direction,
            state: ChannelState::CS_NEW,
            history: vec![ChannelState::CS_NEW],
            cause: None,
            name: String::new(),
            call_state: CallState::DOWN,
            early: false,
            answered: false,
            times: Times::default(),
        }
    }

    pub fn state(&self) -> ChannelState {
        self.state
    }

    /// Every state the channel has been in, in order.
    pub fn history(&self) -> &[ChannelState] {
        &self.history
    }

    /// A channel taken back after a restart (recovery), brought to `state` along the path
    /// a leg of its direction takes in a call (REFERENCE.md): an A-leg through CS_INIT and
    /// CS_ROUTING to CS_EXECUTE, a B-leg on through CS_CONSUME_MEDIA to
    /// CS_EXCHANGE_MEDIA. Each move is logged, as for any channel. None if `state` is not
    /// on that path.
    pub fn recovered(uuid: String, direction: Direction, state: ChannelState) -> Option<Channel> {
        use ChannelState::*;
        let path: &[ChannelState] = match direction {
            Direction::Inbound => &[CS_INIT, CS_ROUTING, CS_EXECUTE],
            Direction::Outbound => &[CS_INIT, CS_ROUTING, CS_CONSUME_MEDIA, CS_EXCHANGE_MEDIA],
        };
        let steps = path.iter().position(|s| *s == state)? + 1;
        let mut channel = Channel::new(uuid, direction);
        for &s in &path[..steps] {
            channel.set_state(s);
        }
        Some(channel)
    }

    /// Moves to `to`, logging the transition with the channel's UUID. A move FreeSWITCH
    /// never makes is refused (and logged): it would be a bug in the caller.
    pub fn set_state(&mut self, to: ChannelState) -> bool {
        if !self.state.can_move_to(to) {
            tracing::warn!(uuid = %self.uuid, from = %self.state, to = %to, "refused channel state change");
            return false;
        }
        info!(uuid = %self.uuid, from = %self.state, to = %to, "channel state");
        self.state = to;
        self.history.push(to);
        true
    }

    /// CS_HANGUP with `cause` (the first cause sticks, as in FreeSWITCH).
    pub fn hangup(&mut self, cause: HangupCause) -> bool {
        if self.cause.is_none() {
            self.cause = Some(cause);
        }
        self.set_state(ChannelState::CS_HANGUP)
    }

    /// CS_HANGUP → CS_REPORTING → CS_DESTROY.
    pub fn finish(&mut self) {
        self.set_state(ChannelState::CS_REPORTING);
        self.set_state(ChannelState::CS_DESTROY);
    }

    /// `Answer-State`: hangup once hung up, else answered, early or ringing.
    pub fn answer_state(&self) -> &'static str {
        if self.cause.is_some() || !self.is_up() {
            "hangup"
        } else if self.answered {
            "answered"
        } else if self.early {
            "early"
        } else {
            "ringing"
        }
    }

    pub fn is_up(&self) -> bool {
        !matches!(self.state, ChannelState::CS_HANGUP | ChannelState::CS_REPORTING | ChannelState::CS_DESTROY)
    }
}

/// Hangup causes as FreeSWITCH names them, with their Q.850 codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[allow(non_camel_case_types, clippy::upper_case_acronyms)]
#[non_exhaustive]
pub enum HangupCause {
    UNALLOCATED_NUMBER,
    NO_ROUTE_DESTINATION,
    NORMAL_CLEARING,
    USER_BUSY,
    NO_USER_RESPONSE,
    NO_ANSWER,
    SUBSCRIBER_ABSENT,
    CALL_REJECTED,
    NUMBER_CHANGED,
    DESTINATION_OUT_OF_ORDER,
    INVALID_NUMBER_FORMAT,
    NORMAL_UNSPECIFIED,
    NETWORK_OUT_OF_ORDER,
    NORMAL_TEMPORARY_FAILURE,
    SERVICE_UNAVAILABLE,
    SERVICE_NOT_IMPLEMENTED,
    INCOMPATIBLE_DESTINATION,
    RECOVERY_ON_TIMER_EXPIRE,
    INTERWORKING,
    EXCHANGE_ROUTING_ERROR,
    ORIGINATOR_CANCEL,
    USER_NOT_REGISTERED,
    LOSE_RACE,
    MEDIA_TIMEOUT,
    /// The switch stopped (crashed) while the channel was up, and could not take it back.
    CRASH,
    SYSTEM_SHUTDOWN,
}

impl fmt::Display for HangupCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl HangupCause {
    /// The Q.850 cause code FreeSWITCH gives it (its own causes take 500+).
    pub fn q850(self) -> u16 {
        use HangupCause::*;
        match self {
            UNALLOCATED_NUMBER => 1,
            NO_ROUTE_DESTINATION => 3,
            NORMAL_CLEARING => 16,
            USER_BUSY => 17,
            NO_USER_RESPONSE => 18,
            NO_ANSWER => 19,
            SUBSCRIBER_ABSENT => 20,
            CALL_REJECTED => 21,
            NUMBER_CHANGED => 22,
            DESTINATION_OUT_OF_ORDER => 27,
            INVALID_NUMBER_FORMAT => 28,
            NORMAL_UNSPECIFIED => 31,
            NETWORK_OUT_OF_ORDER => 38,
            NORMAL_TEMPORARY_FAILURE => 41,
            SERVICE_UNAVAILABLE => 63,
            SERVICE_NOT_IMPLEMENTED => 79,
            INCOMPATIBLE_DESTINATION => 88,
            RECOVERY_ON_TIMER_EXPIRE => 102,
            INTERWORKING => 127,
            EXCHANGE_ROUTING_ERROR => 25,
            ORIGINATOR_CANCEL => 487,
            USER_NOT_REGISTERED => 606,
            LOSE_RACE => 502,
            MEDIA_TIMEOUT => 604,
            CRASH => 700,
            SYSTEM_SHUTDOWN => 503,
        }
    }

    /// The SIP status a caller gets for this cause (mod_sofia's mapping).
    pub fn to_sip(self) -> u16 {
        use HangupCause::*;
        match self {
            UNALLOCATED_NUMBER | NO_ROUTE_DESTINATION => 404,
            USER_BUSY => 486,
            NO_USER_RESPONSE => 408,
            NO_ANSWER | SUBSCRIBER_ABSENT | USER_NOT_REGISTERED => 480,
            CALL_REJECTED => 603,
            NUMBER_CHANGED => 410,
            DESTINATION_OUT_OF_ORDER | NETWORK_OUT_OF_ORDER | NORMAL_UNSPECIFIED => 502,
            INVALID_NUMBER_FORMAT => 484,
            NORMAL_TEMPORARY_FAILURE | SERVICE_UNAVAILABLE => 503,
            SERVICE_NOT_IMPLEMENTED => 501,
            INCOMPATIBLE_DESTINATION => 488,
            RECOVERY_ON_TIMER_EXPIRE => 504,
            EXCHANGE_ROUTING_ERROR => 483,
            ORIGINATOR_CANCEL => 487,
            // mod_sofia's default for the causes it does not list.
            NORMAL_CLEARING | LOSE_RACE | MEDIA_TIMEOUT | INTERWORKING | CRASH => 480,
            SYSTEM_SHUTDOWN => 503,
        }
    }

    /// The cause a SIP final status means (mod_sofia's mapping).
    pub fn from_sip(status: u16) -> HangupCause {
        use HangupCause::*;
        match status {
            200..=299 => NORMAL_CLEARING,
            401 | 402 | 403 | 407 | 603 => CALL_REJECTED,
            404 => UNALLOCATED_NUMBER,
            485 | 604 => NO_ROUTE_DESTINATION,
            408 | 504 => RECOVERY_ON_TIMER_EXPIRE,
            410 => NUMBER_CHANGED,
            413 | 414 | 416 | 420 | 421 | 423 | 505 | 513 => INTERWORKING,
            480 => NO_USER_RESPONSE,
            400 | 481 | 500 | 503 => NORMAL_TEMPORARY_FAILURE,
            486 | 600 => USER_BUSY,
            484 => INVALID_NUMBER_FORMAT,
            488 | 606 => INCOMPATIBLE_DESTINATION,
            502 => NETWORK_OUT_OF_ORDER,
            405 => SERVICE_UNAVAILABLE,
            406 | 415 | 501 => SERVICE_NOT_IMPLEMENTED,
            482 | 483 => EXCHANGE_ROUTING_ERROR,
            487 => ORIGINATOR_CANCEL,
            _ => NORMAL_UNSPECIFIED,
        }
    }

    /// Parses a cause name as the `hangup` application takes it.
    pub fn from_name(name: &str) -> Option<HangupCause> {
        use HangupCause::*;
        Some(match name.trim().to_ascii_uppercase().as_str() {
            "UNALLOCATED_NUMBER" => UNALLOCATED_NUMBER,
            "NO_ROUTE_DESTINATION" => NO_ROUTE_DESTINATION,
            "NORMAL_CLEARING" | "" => NORMAL_CLEARING,
            "USER_BUSY" => USER_BUSY,
            "NO_USER_RESPONSE" => NO_USER_RESPONSE,
            "NO_ANSWER" => NO_ANSWER,
            "SUBSCRIBER_ABSENT" => SUBSCRIBER_ABSENT,
            "CALL_REJECTED" => CALL_REJECTED,
            "NUMBER_CHANGED" => NUMBER_CHANGED,
            "DESTINATION_OUT_OF_ORDER" => DESTINATION_OUT_OF_ORDER,
            "INVALID_NUMBER_FORMAT" => INVALID_NUMBER_FORMAT,
            "NORMAL_UNSPECIFIED" => NORMAL_UNSPECIFIED,
            "NETWORK_OUT_OF_ORDER" => NETWORK_OUT_OF_ORDER,
            "NORMAL_TEMPORARY_FAILURE" => NORMAL_TEMPORARY_FAILURE,
            "SERVICE_UNAVAILABLE" => SERVICE_UNAVAILABLE,
            "SERVICE_NOT_IMPLEMENTED" => SERVICE_NOT_IMPLEMENTED,
            "INCOMPATIBLE_DESTINATION" => INCOMPATIBLE_DESTINATION,
            "RECOVERY_ON_TIMER_EXPIRE" => RECOVERY_ON_TIMER_EXPIRE,
            "INTERWORKING" => INTERWORKING,
            "EXCHANGE_ROUTING_ERROR" => EXCHANGE_ROUTING_ERROR,
            "ORIGINATOR_CANCEL" => ORIGINATOR_CANCEL,
            "USER_NOT_REGISTERED" => USER_NOT_REGISTERED,
            "LOSE_RACE" => LOSE_RACE,
            "MEDIA_TIMEOUT" => MEDIA_TIMEOUT,
            "CRASH" => CRASH,
            "SYSTEM_SHUTDOWN" => SYSTEM_SHUTDOWN,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::ChannelState::*;
    use super::*;

    #[test]
    fn a_leg_and_b_leg_paths_are_allowed_reference_md() {
        let a = [CS_NEW, CS_INIT, CS_ROUTING, CS_EXECUTE, CS_HANGUP, CS_REPORTING, CS_DESTROY];
        let b = [CS_NEW, CS_INIT, CS_ROUTING, CS_CONSUME_MEDIA, CS_EXCHANGE_MEDIA, CS_HANGUP, CS_REPORTING, CS_DESTROY];
        for path in [&a[..], &b[..]] {
            let mut c = Channel::new("u".into(), Direction::Inbound);
            for &s in &path[1..] {
                assert!(c.set_state(s), "{:?} → {s}", c.state());
            }
            assert_eq!(c.history(), path);
        }
    }

    #[test]
    fn a_recovered_channel_walks_its_legs_path_to_the_stored_state() {
        let a = Channel::recovered("a".into(), Direction::Inbound, CS_EXECUTE).unwrap();
        assert_eq!(a.history(), [CS_NEW, CS_INIT, CS_ROUTING, CS_EXECUTE]);
        let b = Channel::recovered("b".into(), Direction::Outbound, CS_EXCHANGE_MEDIA).unwrap();
        assert_eq!(b.history(), [CS_NEW, CS_INIT, CS_ROUTING, CS_CONSUME_MEDIA, CS_EXCHANGE_MEDIA]);
        assert!(Channel::recovered("c".into(), Direction::Inbound, CS_EXCHANGE_MEDIA).is_none());
        assert!(Channel::recovered("d".into(), Direction::Outbound, CS_HANGUP).is_none());
    }

    #[test]
    fn impossible_moves_are_refused() {
        let mut c = Channel::new("u".into(), Direction::Outbound);
        assert!(!c.set_state(CS_EXECUTE));
        assert!(!c.set_state(CS_DESTROY));
        assert!(c.hangup(HangupCause::NO_ANSWER));
        assert!(!c.hangup(HangupCause::USER_BUSY), "a channel hangs up once");
        assert_eq!(c.cause, Some(HangupCause::NO_ANSWER));
        c.finish();
        assert_eq!(c.history(), [CS_NEW, CS_HANGUP, CS_REPORTING, CS_DESTROY]);
        assert!(!c.is_up());
    }

    #[test]
    fn causes_map_to_sip_as_mod_sofia_does() {
        use HangupCause::*;
        for (cause, sip, q850) in [
            (USER_BUSY, 486, 17),
            (USER_NOT_REGISTERED, 480, 606),
            (UNALLOCATED_NUMBER, 404, 1),
            (NO_ROUTE_DESTINATION, 404, 3),
            (CALL_REJECTED, 603, 21),
            (NO_USER_RESPONSE, 408, 18),
            (NO_ANSWER, 480, 19),
            (ORIGINATOR_CANCEL, 487, 487),
            (NORMAL_CLEARING, 480, 16),
            (CRASH, 480, 700),
            (SYSTEM_SHUTDOWN, 503, 503),
        ] {
            assert_eq!((cause.to_sip(), cause.q850()), (sip, q850), "{cause}");
        }
        for (sip, cause) in [
            (486, USER_BUSY),
            (600, USER_BUSY),
            (603, CALL_REJECTED),
            (404, UNALLOCATED_NUMBER),
            (480, NO_USER_RESPONSE),
            (487, ORIGINATOR_CANCEL),
            (499, NORMAL_UNSPECIFIED),
        ] {
            assert_eq!(HangupCause::from_sip(sip), cause, "{sip}");
        }
        assert_eq!(HangupCause::from_name("user_busy"), Some(USER_BUSY));
        assert_eq!((HangupCause::from_name("CRASH"), CRASH.to_string().as_str()), (Some(CRASH), "CRASH"));
        assert_eq!(HangupCause::from_name("nonsense"), None);
    }
}
