//! Deciding: ordered rules, first match wins, exceptions, simulate — at three stages.
//!
//! The proxy asks at each stage of a flow, with what it knows so far:
//! - [`Stage::Connect`]: the tunnel is being opened (host/SNI/IP). The activity is known only
//!   for apps that cannot be inspected (`opaque`): those are decided here, with a 403 to the
//!   CONNECT, before any interception.
//! - [`Stage::Request`]: an HTTP request inside the (intercepted) tunnel: method, path, activity.
//! - [`Stage::Body`]: the request body has been through extraction and the scanner: findings
//!   (detector ids) and whether it was unscannable are known.
//!
//! Conditions a stage cannot know yet (the activity at CONNECT, findings before the body) make
//! a rule *undecided*, and first-match order means a later rule must not decide past an
//! undecided earlier one. The answer is then [`Action::Inspect`]: "look further" — intercept
//! the tunnel (at CONNECT) or scan the body (at request) and ask again at the next stage. So a
//! decision is always exactly what the rules say once everything is known, never a guess.
//!
//! A block at CONNECT is delivered there only when interception cannot help: the app cannot be
//! inspected (or the tunnel is not TLS), or the rule says `stages = ["connect"]`. Otherwise the
//! answer is `inspect` (intercept) and the same rule blocks the first request, so the user sees
//! a block page naming the rule rather than a browser error.
//!
//! Exceptions waive block rules (by default the access rules: no `findings`/`unscannable`
//! condition; or the rules an exception names) for their users and apps until they expire;
//! evaluation then continues with the following rules, so inspection still applies to
//! excepted users. Simulated rules never act: evaluation continues past them and the decision
//! records what the first of them would have done.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use portcullis_classify::Flow;

use crate::file::{Exception, Policy, Rule};

/// What to do with a flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Let it through.
    Allow,
    /// Refuse it (403 to the CONNECT or the request; abort the upload).
    Block,
    /// Let it through and record it.
    Log,
    /// Look further: intercept (at CONNECT), scan the body (at request); at the body stage an
    /// `inspect` rule blocks on findings.
    Inspect,
}

impl Action {
    /// The public name.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Block => "block",
            Action::Log => "log",
            Action::Inspect => "inspect",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Action {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "allow" => Ok(Action::Allow),
            "block" => Ok(Action::Block),
            "log" => Ok(Action::Log),
            "inspect" => Ok(Action::Inspect),
            _ => Err(format!("unknown action {s:?} (expected allow, block, log or inspect)")),
        }
    }
}

/// Where in a flow's life the decision is asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stage {
    /// Tunnel being opened (or non-TLS bytes found in it).
    Connect,
    /// An HTTP request's head.
    Request,
    /// A request body after extraction and scanning.
    Body,
}

impl Stage {
    /// The public name.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Connect => "connect",
            Stage::Request => "request",
            Stage::Body => "body",
        }
    }
}

impl FromStr for Stage {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "connect" => Ok(Stage::Connect),
            "request" => Ok(Stage::Request),
            "body" => Ok(Stage::Body),
            _ => Err(format!("unknown stage {s:?} (expected connect, request or body)")),
        }
    }
}

/// Everything a decision depends on.
#[derive(Clone, Copy, Debug)]
pub struct Facts<'a> {
    /// Authenticated user, if any.
    pub user: Option<&'a str>,
    /// The user's groups.
    pub groups: &'a [String],
    /// The classified flow.
    pub flow: &'a Flow,
    /// Which stage is asking.
    pub stage: Stage,
    /// Detector ids with findings (body stage).
    pub findings: &'a [String],
    /// The body could not be inspected (body stage).
    pub unscannable: bool,
}

/// The exception a decision went through.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ExceptionInfo {
    /// Exception id.
    pub id: Arc<str>,
    /// Who approved it.
    pub approver: String,
    /// Why.
    pub reason: String,
    /// When it stops applying (RFC 3339, UTC).
    pub expires: String,
}

/// A decision, with its reasons.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Decision {
    /// What to do now. `Inspect` at CONNECT: intercept and ask per request; at request: scan
    /// the body and ask again with [`Stage::Body`]. Never `Inspect` at the body stage.
    pub action: Action,
    /// The rule that decided (`None`: no rule matched, the policy default applied).
    pub rule: Option<Arc<str>>,
    /// The exception that waived a block rule on the way, with its approver.
    pub exception: Option<ExceptionInfo>,
    /// A simulated rule matched: `would` is what it would have done.
    pub simulated: bool,
    /// What the simulated rule would have done.
    pub would: Option<Action>,
    /// The simulated rule's id.
    pub simulated_rule: Option<Arc<str>>,
    /// The stage this decision is for.
    pub stage: Stage,
}

impl Decision {
    /// Whether the proxy should write an audit record for it: blocks, logs, exceptions used and
    /// simulations.
    pub fn should_record(&self) -> bool {
        matches!(self.action, Action::Block | Action::Log) || self.exception.is_some() || self.simulated
    }

    /// Flat labels for block pages and audit records: `app`, `category`, `activity`, `action`,
    /// `rule`, `stage`, and when present `exception`, `approver`, `exception_expires`,
    /// `simulated_rule`, `would`. Absent values are left out.
    pub fn labels(&self, flow: &Flow) -> Vec<(&'static str, String)> {
        let mut out = Vec::with_capacity(10);
        if let Some(app) = flow.app.as_deref() {
            out.push(("app", app.id.clone()));
            out.push(("category", app.category.clone()));
        }
        if let Some(a) = flow.activity {
            out.push(("activity", a.as_str().to_owned()));
        }
        out.push(("action", self.action.as_str().to_owned()));
        if let Some(r) = &self.rule {
            out.push(("rule", r.to_string()));
        }
        out.push(("stage", self.stage.as_str().to_owned()));
        if let Some(e) = &self.exception {
            out.push(("exception", e.id.to_string()));
            out.push(("approver", e.approver.clone()));
            out.push(("exception_expires", e.expires.clone()));
        }
        if let (Some(r), Some(w)) = (&self.simulated_rule, self.would) {
            out.push(("simulated_rule", r.to_string()));
            out.push(("would", w.as_str().to_owned()));
        }
        out
    }
}

/// Three-valued match: a condition the stage cannot know yet is `Unknown`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum M {
    Yes,
    No,
    Unknown,
}

impl M {
    fn and(self, other: M) -> M {
        match (self, other) {
            (M::No, _) | (_, M::No) => M::No,
            (M::Unknown, _) | (_, M::Unknown) => M::Unknown,
            _ => M::Yes,
        }
    }

    fn from(b: bool) -> M {
        if b { M::Yes } else { M::No }
    }
}

fn who(users: &[String], groups: &[String], f: &Facts<'_>) -> bool {
    (users.is_empty() && groups.is_empty())
        || f.user.is_some_and(|u| users.iter().any(|x| x == u))
        || f.groups.iter().any(|g| groups.contains(g))
}

fn activity_match(list: &[portcullis_classify::Activity], f: &Facts<'_>) -> M {
    if list.is_empty() {
        return M::Yes;
    }
    match f.flow.activity {
        Some(a) => M::from(list.contains(&a)),
        None => M::Unknown,
    }
}

impl Rule {
    fn matches(&self, f: &Facts<'_>) -> M {
        let app = f.flow.app_id();
        let cat = f.flow.category();
        let mut m = M::from(who(&self.users, &self.groups, f))
            .and(M::from(self.stages.is_empty() || self.stages.contains(&f.stage)))
            .and(M::from(self.apps.is_empty() || app.is_some_and(|a| self.apps.iter().any(|n| n.name == a))))
            .and(M::from(self.categories.is_empty() || cat.is_some_and(|c| self.categories.iter().any(|n| n.name == c))))
            .and(activity_match(&self.activities, f));
        let body = f.stage == Stage::Body;
        if self.any_finding || self.findings.is_some() {
            m = m.and(if !body {
                M::Unknown
            } else if self.any_finding {
                M::from(!f.findings.is_empty())
            } else {
                M::from(self.findings.iter().flatten().any(|n| f.findings.contains(&n.name)))
            });
        }
        if let Some(want) = self.unscannable {
            m = m.and(if body { M::from(f.unscannable == want) } else { M::Unknown });
        }
        m
    }

    /// The rule's action resolved for the stage: an `inspect` rule at the body stage blocks on
    /// findings, records unscannable content, and allows clean content.
    fn action_at(&self, f: &Facts<'_>) -> Action {
        match (self.action, f.stage) {
            (Action::Inspect, Stage::Body) if !f.findings.is_empty() => Action::Block,
            (Action::Inspect, Stage::Body) if f.unscannable => Action::Log,
            (Action::Inspect, Stage::Body) => Action::Allow,
            (a, _) => a,
        }
    }
}

impl Exception {
    fn matches(&self, f: &Facts<'_>, now: SystemTime) -> M {
        if now >= self.expires {
            return M::No;
        }
        let app = f.flow.app_id();
        let cat = f.flow.category();
        M::from(who(&self.users, &self.groups, f))
            .and(M::from(
                app.is_some_and(|a| self.apps.iter().any(|n| n.name == a))
                    || cat.is_some_and(|c| self.categories.iter().any(|n| n.name == c)),
            ))
            .and(activity_match(&self.activities, f))
    }

    pub(crate) fn covers(&self, rule: &Rule) -> bool {
        if self.rules.is_empty() { rule.waivable_by_default() } else { self.rules.contains(&rule.id) }
    }

    fn info(&self) -> ExceptionInfo {
        ExceptionInfo {
            id: self.id.clone(),
            approver: self.approver.clone(),
            reason: self.reason.clone(),
            expires: self.expires_text.clone(),
        }
    }
}

impl Policy {
    /// Decide for `facts` at `now` (injected: exceptions expire against it).
    pub fn decide(&self, facts: &Facts<'_>, now: SystemTime) -> Decision {
        let mut exception: Option<ExceptionInfo> = None;
        let mut sim: Option<(Arc<str>, Action)> = None;
        let finish = |action: Action, rule: Option<Arc<str>>, exception: Option<ExceptionInfo>, sim: Option<(Arc<str>, Action)>| {
            // A decision made through an exception or beside a simulation must be recorded.
            let action = if action == Action::Allow && (exception.is_some() || sim.is_some()) { Action::Log } else { action };
            Decision {
                action,
                rule,
                exception,
                simulated: sim.is_some(),
                would: sim.as_ref().map(|s| s.1),
                simulated_rule: sim.map(|s| s.0),
                stage: facts.stage,
            }
        };
        for rule in &self.rules {
            match rule.matches(facts) {
                M::No => continue,
                M::Unknown => return finish(Action::Inspect, Some(rule.id.clone()), exception, sim),
                M::Yes => {}
            }
            let action = rule.action_at(facts);
            if action == Action::Block {
                let mut pending = false;
                let mut waived_by = None;
                for e in self.exceptions.iter().filter(|e| e.covers(rule)) {
                    match e.matches(facts, now) {
                        M::Yes => {
                            waived_by = Some(e);
                            break;
                        }
                        M::Unknown => pending = true,
                        M::No => {}
                    }
                }
                if let Some(e) = waived_by {
                    exception.get_or_insert_with(|| e.info());
                    continue;
                }
                if pending {
                    // An exception may apply once the activity is known: look further.
                    return finish(Action::Inspect, Some(rule.id.clone()), exception, sim);
                }
            }
            if rule.simulate {
                if action == Action::Inspect {
                    // What a simulated inspect rule would do depends on the body: scan it.
                    return finish(Action::Inspect, Some(rule.id.clone()), exception, sim);
                }
                sim.get_or_insert((rule.id.clone(), action));
                continue;
            }
            if action == Action::Block && facts.stage == Stage::Connect && facts.flow.activity.is_none() && rule.stages.is_empty() {
                // The tunnel can be intercepted: block the requests inside it, where the user
                // gets a block page naming the rule, instead of a bare 403 to the CONNECT.
                return finish(Action::Inspect, Some(rule.id.clone()), exception, sim);
            }
            return finish(action, Some(rule.id.clone()), exception, sim);
        }
        let default = match (self.default_action, facts.stage) {
            (Action::Inspect, Stage::Body) if !facts.findings.is_empty() => Action::Block,
            (Action::Inspect, Stage::Body) => Action::Allow,
            (a, _) => a,
        };
        finish(default, None, exception, sim)
    }
}
