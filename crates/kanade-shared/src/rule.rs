//! Dynamic groups' membership rules: a small language over an agent's fields and its facts,
//! e.g. `os.family = windows and facts.volumes.free_pct < 10`. Parsing and evaluation are pure;
//! the backend gathers the values and writes the memberships.
//!
//! ```text
//! rule  := or
//! or    := and ("or" and)*
//! and   := unary ("and" unary)*
//! unary := "not" unary | "(" rule ")" | field op value
//! field := agent field (pc, hostname, os.family, os.name, os.version, arch, agent.version,
//!          groups) | facts.<table>.<column>
//! op    := = != < <= > >= ~        (~: contains, any case)
//! value := number | 'text' | "text" | word
//! ```
//!
//! A comparison holds when any of the field's values satisfies it: an agent field has one value
//! (`groups` one per group), a facts column one per row the PC reported. Numbers compare as
//! numbers when both sides are numbers; text compares without regard to case.

use std::cmp::Ordering;

use serde_json::Value;

/// The agent fields a rule may name.
pub const AGENT_FIELDS: [&str; 8] =
    ["pc", "hostname", "os.family", "os.name", "os.version", "arch", "agent.version", "groups"];

/// The longest rule accepted.
pub const MAX_LEN: usize = 2000;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Field {
    Agent(String),
    Fact { table: String, column: String },
}

impl std::fmt::Display for Field {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Field::Agent(name) => f.write_str(name),
            Field::Fact { table, column } => write!(f, "facts.{table}.{column}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Number(f64),
    Text(String),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Rule {
    And(Box<Rule>, Box<Rule>),
    Or(Box<Rule>, Box<Rule>),
    Not(Box<Rule>),
    Cmp { field: Field, op: Op, value: Literal },
}

/// Where a rule is wrong: the character offset and what is expected there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule: at character {at}: {message}")]
pub struct RuleError {
    pub at: usize,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Word(String),
    Quoted(String),
    Number(f64),
    Op(Op),
    Open,
    Close,
}

fn lex(text: &str) -> Result<Vec<(usize, Token)>, RuleError> {
    let err = |at: usize, message: String| RuleError { at, message };
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let (at, c) = chars[i];
        let next = chars.get(i + 1).map(|(_, c)| *c);
        match c {
            c if c.is_whitespace() => i += 1,
            '(' | ')' => {
                out.push((at, if c == '(' { Token::Open } else { Token::Close }));
                i += 1;
            }
            '=' | '~' => {
                out.push((at, Token::Op(if c == '=' { Op::Eq } else { Op::Contains })));
                i += 1 + usize::from(c == '=' && next == Some('='));
            }
            '!' | '<' | '>' => {
                let (op, len) = match (c, next) {
                    ('!', Some('=')) => (Op::Ne, 2),
                    ('<', Some('=')) => (Op::Le, 2),
                    ('>', Some('=')) => (Op::Ge, 2),
                    ('<', _) => (Op::Lt, 1),
                    ('>', _) => (Op::Gt, 1),
                    _ => return Err(err(at, "`!` goes with `=` (`!=`)".into())),
                };
                out.push((at, Token::Op(op)));
                i += len;
            }
            '\'' | '"' => {
                let end = chars[i + 1..].iter().position(|(_, q)| *q == c).map(|p| p + i + 1);
                let Some(end) = end else {
                    return Err(err(at, format!("text opened with {c} is not closed")));
                };
                out.push((at, Token::Quoted(chars[i + 1..end].iter().map(|(_, c)| c).collect())));
                i = end + 1;
            }
            _ => {
                let end = chars[i..]
                    .iter()
                    .position(|(_, c)| c.is_whitespace() || "()=~!<>'\"".contains(*c))
                    .map_or(chars.len(), |p| p + i);
                let word: String = chars[i..end].iter().map(|(_, c)| c).collect();
                // A number only when all of it is one (`10e9`, `-3.5`); `7zip` stays a word.
                let token = match word.parse::<f64>() {
                    Ok(n)
                        if n.is_finite()
                            && word.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '.') =>
                    {
                        Token::Number(n)
                    }
                    _ => Token::Word(word),
                };
                out.push((at, token));
                i = end;
            }
        }
    }
    Ok(out)
}

struct Parser {
    tokens: Vec<(usize, Token)>,
    pos: usize,
    end: usize,
    /// `not`s and parentheses open around here: bounded, so no rule can exhaust the stack.
    depth: usize,
}

/// How deep `not` and parentheses may nest.
pub const MAX_DEPTH: usize = 32;

impl Parser {
    fn at(&self) -> usize {
        self.tokens.get(self.pos).map_or(self.end, |(at, _)| *at)
    }

    fn peek_word(&self, word: &str) -> bool {
        matches!(self.tokens.get(self.pos), Some((_, Token::Word(w))) if w.eq_ignore_ascii_case(word))
    }

    fn fail<T>(&self, message: impl Into<String>) -> Result<T, RuleError> {
        Err(RuleError { at: self.at(), message: message.into() })
    }

    fn or(&mut self) -> Result<Rule, RuleError> {
        let mut left = self.and()?;
        while self.peek_word("or") {
            self.pos += 1;
            left = Rule::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Rule, RuleError> {
        let mut left = self.unary()?;
        while self.peek_word("and") {
            self.pos += 1;
            left = Rule::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Rule, RuleError> {
        self.depth += 1;
        let rule = if self.depth > MAX_DEPTH {
            self.fail(format!("nested deeper than {MAX_DEPTH} levels of `not` and parentheses"))
        } else {
            self.operand()
        };
        self.depth -= 1;
        rule
    }

    fn operand(&mut self) -> Result<Rule, RuleError> {
        if self.peek_word("not") {
            self.pos += 1;
            return Ok(Rule::Not(Box::new(self.unary()?)));
        }
        match self.tokens.get(self.pos).cloned() {
            Some((_, Token::Open)) => {
                self.pos += 1;
                let inner = self.or()?;
                match self.tokens.get(self.pos) {
                    Some((_, Token::Close)) => {
                        self.pos += 1;
                        Ok(inner)
                    }
                    _ => self.fail("expected `)`"),
                }
            }
            Some((_, Token::Word(name))) => {
                let field = field(&name).map_err(|message| RuleError { at: self.at(), message })?;
                self.pos += 1;
                let Some((_, Token::Op(op))) = self.tokens.get(self.pos).cloned() else {
                    return self.fail(format!("expected an operator (= != < <= > >= ~) after {name}"));
                };
                self.pos += 1;
                let value = match self.tokens.get(self.pos).cloned() {
                    Some((_, Token::Number(n))) => Literal::Number(n),
                    Some((_, Token::Quoted(t))) => Literal::Text(t),
                    Some((_, Token::Word(w)))
                        if !["and", "or", "not"].contains(&w.to_lowercase().as_str()) =>
                    {
                        Literal::Text(w)
                    }
                    _ => return self.fail(format!("expected a value to compare {name} with")),
                };
                self.pos += 1;
                Ok(Rule::Cmp { field, op, value })
            }
            None => self.fail("the rule ends where a comparison (field op value) should be"),
            Some(_) => self.fail("expected a field (os.family, facts.<table>.<column>, …), `not` or `(`"),
        }
    }
}

fn field(name: &str) -> Result<Field, String> {
    let lower = name.to_lowercase();
    if let Some(rest) = lower.strip_prefix("facts.") {
        return match rest.split_once('.') {
            Some((table, column)) if !table.is_empty() && !column.is_empty() && !column.contains('.') => {
                Ok(Field::Fact { table: table.to_owned(), column: column.to_owned() })
            }
            _ => Err(format!("{name:?}: a facts field is facts.<table>.<column>")),
        };
    }
    if AGENT_FIELDS.contains(&lower.as_str()) {
        return Ok(Field::Agent(lower));
    }
    Err(format!("unknown field {name:?}; use one of {} or facts.<table>.<column>", AGENT_FIELDS.join(", ")))
}

pub fn parse(text: &str) -> Result<Rule, RuleError> {
    if text.len() > MAX_LEN {
        return Err(RuleError { at: MAX_LEN, message: format!("longer than {MAX_LEN} characters") });
    }
    let tokens = lex(text)?;
    let mut p = Parser { tokens, pos: 0, end: text.len(), depth: 0 };
    let rule = p.or()?;
    if p.pos < p.tokens.len() {
        return p.fail("expected `and`, `or` or the end of the rule");
    }
    Ok(rule)
}

impl Rule {
    /// Every field the rule reads, each once.
    pub fn fields(&self) -> Vec<Field> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out.sort();
        out.dedup();
        out
    }

    fn collect(&self, out: &mut Vec<Field>) {
        match self {
            Rule::And(a, b) | Rule::Or(a, b) => {
                a.collect(out);
                b.collect(out);
            }
            Rule::Not(a) => a.collect(out),
            Rule::Cmp { field, .. } => out.push(field.clone()),
        }
    }

    /// Whether a PC whose values of each field `values` gives belongs.
    pub fn matches(&self, values: &dyn Fn(&Field) -> Vec<Value>) -> bool {
        match self {
            Rule::And(a, b) => a.matches(values) && b.matches(values),
            Rule::Or(a, b) => a.matches(values) || b.matches(values),
            Rule::Not(a) => !a.matches(values),
            Rule::Cmp { field, op, value } => values(field).iter().any(|v| compare(v, *op, value)),
        }
    }
}

fn compare(have: &Value, op: Op, want: &Literal) -> bool {
    let number = match have {
        Value::Number(n) => n.as_f64(),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    let text = match have {
        Value::String(s) => s.clone(),
        Value::Null => return false,
        other => other.to_string(),
    };
    let ordering = match (number, want) {
        (Some(n), Literal::Number(w)) => n.partial_cmp(w),
        (_, Literal::Text(w)) => Some(text.to_lowercase().cmp(&w.to_lowercase())),
        (None, Literal::Number(w)) => Some(text.to_lowercase().cmp(&w.to_string())),
    };
    let Some(ordering) = ordering else { return false };
    match op {
        Op::Eq => ordering == Ordering::Equal,
        Op::Ne => ordering != Ordering::Equal,
        Op::Lt => ordering == Ordering::Less,
        Op::Le => ordering != Ordering::Greater,
        Op::Gt => ordering == Ordering::Greater,
        Op::Ge => ordering != Ordering::Less,
        Op::Contains => {
            let w = match want {
                Literal::Text(t) => t.to_lowercase(),
                Literal::Number(n) => n.to_string(),
            };
            text.to_lowercase().contains(&w)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn values(field: &Field) -> Vec<Value> {
        match field.to_string().as_str() {
            "os.family" => vec![json!("windows")],
            "hostname" => vec![json!("Lab-PC-07")],
            "groups" => vec![json!("lab"), json!("floor-2")],
            "agent.version" => vec![json!("0.9.1")],
            "facts.volumes.free_pct" => vec![json!(80), json!(4)],
            "facts.volumes.mount" => vec![json!("C:"), json!("D:")],
            "facts.disks.free_bytes" => vec![json!(5_000_000_000_i64)],
            _ => vec![],
        }
    }

    #[test]
    fn rules_match_as_an_admin_reads_them() {
        let cases = [
            ("os.family = windows", true),
            ("os.family = WINDOWS", true),
            ("os.family != windows", false),
            ("os.family = linux or os.family = windows", true),
            ("os.family = windows and facts.disks.free_bytes < 10e9", true),
            ("os.family = windows and facts.disks.free_bytes > 10e9", false),
            ("facts.volumes.free_pct < 10", true),
            ("not facts.volumes.free_pct < 10", false),
            ("facts.volumes.free_pct >= 90", false),
            ("hostname ~ lab", true),
            ("groups = 'floor-2'", true),
            ("groups = lab and not (groups = kiosk)", true),
            ("facts.volumes.mount = \"d:\"", true),
            ("facts.nothing.here = 1", false),
            ("not facts.nothing.here = 1", true),
            ("os.family = linux or os.family = windows and groups = kiosk", false),
            ("(os.family = linux or os.family = windows) and groups = lab", true),
            ("agent.version < 0.10", false),
            ("agent.version ~ 0.9", true),
        ];
        for (rule, want) in cases {
            let parsed = parse(rule).unwrap_or_else(|e| panic!("{rule}: {e}"));
            assert_eq!(parsed.matches(&values), want, "{rule}");
        }
    }

    #[test]
    fn mistakes_are_named_with_where_they_are() {
        let cases = [
            ("", 0, "the rule ends where a comparison"),
            ("os.family windows", 10, "expected an operator"),
            ("os.famly = windows", 0, "unknown field \"os.famly\""),
            ("facts.volumes = 3", 0, "facts.<table>.<column>"),
            ("os.family = windows and", 23, "the rule ends where"),
            ("(os.family = windows", 20, "expected `)`"),
            ("os.family = 'windows", 12, "not closed"),
            ("os.family = windows windows", 20, "expected `and`, `or`"),
            ("os.family ! windows", 10, "`!` goes with `=`"),
            ("os.family = and", 12, "expected a value"),
            (&*format!("{}os.family = x{}", "(".repeat(40), ")".repeat(40)), 32, "nested deeper than 32"),
        ];
        for (rule, at, message) in cases {
            let e = parse(rule).unwrap_err();
            assert_eq!(e.at, at, "{rule}: {e}");
            assert!(e.message.contains(message), "{rule}: {e}");
        }
    }

    #[test]
    fn fields_lists_each_field_once() {
        let rule = parse("facts.v.a < 1 or (os.family = x and facts.v.a > 5) or os.family = y").unwrap();
        let fields: Vec<String> = rule.fields().iter().map(ToString::to_string).collect();
        assert_eq!(fields, ["os.family", "facts.v.a"]);
    }
}
