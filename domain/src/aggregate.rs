//! What every aggregate and its events have in common: the event codec (one
//! place turns a domain event into what the log stores and back), the fold
//! of a stream into state, and a decision (the events to append and the
//! answer to give).
//!
//! Each aggregate's events are one enum, adjacently tagged as the log stores
//! them (`#[serde(tag = "event_type", content = "payload")]`): the tag is the
//! stored `event_type`, the content the stored `payload`. Readers never
//! compare event type strings; they decode to the enum and match on it.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use crate::error::DomainError;
use crate::event::{NewEvent, RecordedEvent};

/// Why an event could not be turned into its stored form or back.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot encode {event_type}: {reason}")]
    Encode { event_type: String, reason: String },
    #[error("event {event_id} ({stream_type}/{event_type}) cannot be decoded: {reason}")]
    Decode {
        event_id: String,
        stream_type: String,
        event_type: String,
        reason: String,
    },
}

/// A fact of one aggregate's streams.
pub trait DomainEvent: Serialize + DeserializeOwned + Send + Sync + Sized {
    /// The stream type (the aggregate kind) these events are stored under.
    const STREAM_TYPE: &'static str;

    /// The fact's name in the past tense, as stored in `event_type`. It is
    /// the serde tag of the variant; [`encode`] checks that they agree.
    fn event_type(&self) -> &'static str;

    /// The payload's schema version. Older versions are lifted by the
    /// upcasters on read, so decoding only ever sees the current one.
    fn schema_version(&self) -> i32 {
        1
    }
}

/// The event as the log stores it (no metadata yet: the application adds
/// who acted).
pub fn encode<E: DomainEvent>(event: &E) -> Result<NewEvent, CodecError> {
    let fail = |reason: String| CodecError::Encode {
        event_type: event.event_type().to_owned(),
        reason,
    };
    let Value::Object(mut tagged) = serde_json::to_value(event).map_err(|e| fail(e.to_string()))?
    else {
        return Err(fail("not an adjacently tagged enum".into()));
    };
    let tag = tagged.remove("event_type");
    if tag.as_ref().and_then(Value::as_str) != Some(event.event_type()) {
        return Err(fail(format!("its serde tag is {tag:?}")));
    }
    let payload = tagged.remove("payload").unwrap_or(Value::Null);
    Ok(NewEvent::new(
        event.event_type(),
        event.schema_version(),
        payload,
    ))
}

/// Every event of a batch, encoded.
pub fn encode_all<E: DomainEvent>(events: &[E]) -> Result<Vec<NewEvent>, CodecError> {
    events.iter().map(encode).collect()
}

impl RecordedEvent {
    /// Whether this event belongs to `E`'s streams.
    pub fn is<E: DomainEvent>(&self) -> bool {
        self.stream_type == E::STREAM_TYPE
    }

    /// Decodes the event as one of `E`'s (after upcasting: the payload is
    /// the current schema).
    pub fn decode<E: DomainEvent>(&self) -> Result<E, CodecError> {
        let fail = |reason: String| CodecError::Decode {
            event_id: self.event_id.to_string(),
            stream_type: self.stream_type.clone(),
            event_type: self.event_type.clone(),
            reason,
        };
        if !self.is::<E>() {
            return Err(fail(format!("not a {} event", E::STREAM_TYPE)));
        }
        let mut tagged = serde_json::Map::with_capacity(2);
        tagged.insert("event_type".into(), Value::String(self.event_type.clone()));
        tagged.insert("payload".into(), self.payload.clone());
        serde_json::from_value(Value::Object(tagged)).map_err(|e| fail(e.to_string()))
    }

    /// The event as one of `E`'s, or `None` when it belongs to another
    /// stream type: what a reactor that follows the whole log asks.
    pub fn decode_if<E: DomainEvent>(&self) -> Option<Result<E, CodecError>> {
        self.is::<E>().then(|| self.decode())
    }
}

/// State folded from a stream's events.
pub trait Aggregate: Sized + Send + Sync {
    type Event: DomainEvent;

    /// Whether the state is a fold of the stream. A stream whose state is
    /// an inline read model instead (a project's data items: thousands of
    /// events, read from the `data_items` table kept in the append's
    /// transaction) is only versioned by the executor, never read.
    const FOLDED: bool = true;

    /// The state after `events` (oldest first) of stream `stream_id`;
    /// `None` while the stream holds no such aggregate.
    fn fold(stream_id: &str, events: &[Self::Event]) -> Option<Self>;
}

/// What a command decided: the events to append and the answer to give. A
/// refusal may still record facts (a wrong code counts against the code).
#[derive(Debug, Clone, PartialEq)]
pub struct Decision<E, T = ()> {
    pub events: Vec<E>,
    pub outcome: Result<T, DomainError>,
}

impl<E, T> Decision<E, T> {
    /// Append `events`, answer `value`.
    pub fn new(events: Vec<E>, value: T) -> Self {
        Decision {
            events,
            outcome: Ok(value),
        }
    }

    /// Append `events`, then refuse with `error`.
    pub fn refuse(events: Vec<E>, error: DomainError) -> Self {
        Decision {
            events,
            outcome: Err(error),
        }
    }
}

impl<E> Decision<E> {
    /// Append `events`, answer nothing more.
    pub fn ok(events: Vec<E>) -> Self {
        Decision::new(events, ())
    }
}

impl<E> From<Result<Vec<E>, DomainError>> for Decision<E> {
    fn from(r: Result<Vec<E>, DomainError>) -> Self {
        match r {
            Ok(events) => Decision::ok(events),
            Err(e) => Decision::refuse(Vec::new(), e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    #[serde(tag = "event_type", content = "payload")]
    enum NoteEvent {
        NoteAdded { text: String },
        NoteCleared,
    }

    impl DomainEvent for NoteEvent {
        const STREAM_TYPE: &'static str = "note";
        fn event_type(&self) -> &'static str {
            match self {
                NoteEvent::NoteAdded { .. } => "NoteAdded",
                NoteEvent::NoteCleared => "NoteCleared",
            }
        }
    }

    fn recorded(stream_type: &str, e: NewEvent) -> RecordedEvent {
        RecordedEvent {
            log_position: crate::LogPosition::START,
            global_position: 1,
            event_id: e.event_id,
            stream_type: stream_type.into(),
            stream_id: "n1".into(),
            stream_version: 1,
            event_type: e.event_type,
            event_version: e.event_version,
            payload: e.payload,
            metadata: e.metadata,
            recorded_at: chrono::DateTime::from_timestamp(0, 0).unwrap(),
        }
    }

    #[test]
    fn an_event_round_trips_through_its_stored_form() {
        let e = NoteEvent::NoteAdded { text: "hi".into() };
        let stored = encode(&e).unwrap();
        assert_eq!(stored.event_type, "NoteAdded");
        assert_eq!(stored.event_version, 1);
        assert_eq!(stored.payload, serde_json::json!({"text": "hi"}));
        let back: NoteEvent = recorded("note", stored).decode().unwrap();
        assert_eq!(back, e);
        let unit = recorded("note", encode(&NoteEvent::NoteCleared).unwrap());
        assert_eq!(unit.decode::<NoteEvent>().unwrap(), NoteEvent::NoteCleared);
    }

    #[test]
    fn another_stream_types_event_is_not_decoded() {
        let other = recorded("task", encode(&NoteEvent::NoteCleared).unwrap());
        assert!(other.decode_if::<NoteEvent>().is_none());
        assert!(other.decode::<NoteEvent>().is_err());
    }

    #[test]
    fn a_name_that_disagrees_with_the_serde_tag_is_refused() {
        #[derive(Serialize, Deserialize)]
        #[serde(tag = "event_type", content = "payload")]
        enum Misnamed {
            Happened,
        }
        impl DomainEvent for Misnamed {
            const STREAM_TYPE: &'static str = "x";
            fn event_type(&self) -> &'static str {
                "SomethingElse"
            }
        }
        assert!(encode(&Misnamed::Happened).is_err());
    }
}
