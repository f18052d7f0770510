//! Who does things: typed actors, written `kind:name` (e.g. `agent:ci`).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::ModelError;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActorKind {
    User,
    Agent,
    Application,
    Service,
}

impl ActorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ActorKind::User => "user",
            ActorKind::Agent => "agent",
            ActorKind::Application => "application",
            ActorKind::Service => "service",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Actor {
    pub kind: ActorKind,
    pub name: String,
}

impl Actor {
    /// The actor the CLI uses on an embedded store unless configured otherwise.
    pub fn local_admin() -> Self {
        Actor {
            kind: ActorKind::User,
            name: "local-admin".to_owned(),
        }
    }
    /// The store itself, for records it writes on its own behalf (e.g. recovery).
    pub fn system() -> Self {
        Actor {
            kind: ActorKind::Service,
            name: "kontextual".to_owned(),
        }
    }
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.kind.as_str(), self.name)
    }
}

impl FromStr for Actor {
    type Err = ModelError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |r: &str| ModelError::invalid("actor", s, r);
        let (kind, name) = s
            .split_once(':')
            .ok_or_else(|| bad("expected KIND:NAME, e.g. user:alice or agent:ci"))?;
        let kind = match kind {
            "user" => ActorKind::User,
            "agent" => ActorKind::Agent,
            "application" => ActorKind::Application,
            "service" => ActorKind::Service,
            _ => return Err(bad("kind must be user, agent, application or service")),
        };
        let ok = !name.is_empty()
            && name.len() <= 128
            && name
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b'@'));
        if !ok {
            return Err(bad(
                "name must be 1-128 letters, digits, '-', '_', '.' or '@'",
            ));
        }
        Ok(Actor {
            kind,
            name: name.to_owned(),
        })
    }
}

impl TryFrom<String> for Actor {
    type Error = ModelError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<Actor> for String {
    fn from(a: Actor) -> String {
        a.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_display() {
        let a: Actor = "agent:ci".parse().unwrap();
        assert_eq!(a.kind, ActorKind::Agent);
        assert_eq!(a.to_string(), "agent:ci");
        assert!("robot:x".parse::<Actor>().is_err());
        assert!("user:".parse::<Actor>().is_err());
        assert!("user:a b".parse::<Actor>().is_err());
    }
}
