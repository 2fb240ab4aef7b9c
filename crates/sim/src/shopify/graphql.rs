//! A small GraphQL lexer and parser for the documents a connector sends: operations with
//! variables, nested selections with arguments, directives, fragments and inline fragments.
//!
//! The simulator executes documents itself instead of using a GraphQL server framework, so
//! that costs, errors and shapes follow Shopify's rules rather than a framework's.

use serde_json::{Map, Value as Json};

/// A position in the document, 1-based like GraphQL's `locations`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Variable(String),
    Int(i64),
    Float(f64),
    String(String),
    Boolean(bool),
    Null,
    Enum(String),
    List(Vec<Value>),
    Object(Vec<(String, Value)>),
}

#[derive(Debug, Clone)]
pub struct Directive {
    pub name: String,
    pub arguments: Vec<(String, Value)>,
}

#[derive(Debug, Clone)]
pub struct Field {
    pub alias: Option<String>,
    pub name: String,
    pub arguments: Vec<(String, Value)>,
    pub directives: Vec<Directive>,
    pub selection_set: Vec<Selection>,
    pub position: Position,
}

#[derive(Debug, Clone)]
pub enum Selection {
    Field(Field),
    FragmentSpread { name: String, position: Position },
    InlineFragment { type_condition: Option<String>, selection_set: Vec<Selection> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    Query,
    Mutation,
    Subscription,
}

#[derive(Debug, Clone)]
pub struct VariableDefinition {
    pub name: String,
    pub non_null: bool,
    pub default: Option<Value>,
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub kind: OperationKind,
    pub name: Option<String>,
    pub variables: Vec<VariableDefinition>,
    pub directives: Vec<Directive>,
    pub selection_set: Vec<Selection>,
    pub position: Position,
}

#[derive(Debug, Clone)]
pub struct Fragment {
    pub name: String,
    pub type_condition: String,
    pub selection_set: Vec<Selection>,
}

#[derive(Debug, Clone, Default)]
pub struct Document {
    pub operations: Vec<Operation>,
    pub fragments: Vec<Fragment>,
}

/// An error in the document, reported like graphql-ruby does (Shopify runs on it).
#[derive(Debug, Clone, PartialEq)]
pub struct GraphqlError {
    pub message: String,
    pub position: Option<Position>,
}

impl GraphqlError {
    pub fn new(message: impl Into<String>, position: Option<Position>) -> Self {
        Self { message: message.into(), position }
    }

    pub fn to_json(&self) -> Json {
        let mut error = Map::new();
        error.insert("message".into(), Json::String(self.message.clone()));
        if let Some(position) = self.position {
            error.insert("locations".into(), serde_json::json!([{"line": position.line, "column": position.column}]));
        }
        Json::Object(error)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Punctuator(&'static str),
    Name(String),
    Int(i64),
    Float(f64),
    String(String),
    End,
}

impl Token {
    fn describe(&self) -> String {
        match self {
            Token::Punctuator(p) => format!("\"{p}\""),
            Token::Name(n) => format!("\"{n}\" (IDENTIFIER)"),
            Token::Int(i) => format!("\"{i}\" (INT)"),
            Token::Float(f) => format!("\"{f}\" (FLOAT)"),
            Token::String(s) => format!("\"{s}\" (STRING)"),
            Token::End => "end of file".to_string(),
        }
    }
}

/// The largest document accepted; the HTTP body limit is the outer bound, this one keeps a
/// bulk operation's embedded query from being arbitrarily large too.
const MAX_TOKENS: usize = 200_000;
/// Nesting bound so a hostile document cannot overflow the stack of the recursive parser.
const MAX_DEPTH: usize = 64;

fn lex(source: &str) -> Result<Vec<(Token, Position)>, GraphqlError> {
    let chars: Vec<char> = source.chars().collect();
    let mut tokens = Vec::new();
    let (mut i, mut line, mut column) = (0usize, 1usize, 1usize);
    while i < chars.len() {
        if tokens.len() > MAX_TOKENS {
            return Err(GraphqlError::new("Document is too large", None));
        }
        let c = chars[i];
        let position = Position { line, column };
        match c {
            '\n' => {
                i += 1;
                line += 1;
                column = 1;
            }
            ' ' | '\t' | '\r' | ',' | '\u{feff}' => {
                i += 1;
                column += 1;
            }
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '!' | '$' | '&' | '(' | ')' | ':' | '=' | '@' | '[' | ']' | '{' | '|' | '}' => {
                let p = match c {
                    '!' => "!",
                    '$' => "$",
                    '&' => "&",
                    '(' => "(",
                    ')' => ")",
                    ':' => ":",
                    '=' => "=",
                    '@' => "@",
                    '[' => "[",
                    ']' => "]",
                    '{' => "{",
                    '|' => "|",
                    _ => "}",
                };
                tokens.push((Token::Punctuator(p), position));
                i += 1;
                column += 1;
            }
            '.' => {
                if chars.get(i + 1) == Some(&'.') && chars.get(i + 2) == Some(&'.') {
                    tokens.push((Token::Punctuator("..."), position));
                    i += 3;
                    column += 3;
                } else {
                    return Err(GraphqlError::new(
                        format!("Parse error on \".\" at [{line}, {column}]"),
                        Some(position),
                    ));
                }
            }
            '"' => {
                let block = chars.get(i + 1) == Some(&'"') && chars.get(i + 2) == Some(&'"');
                let mut text = String::new();
                if block {
                    i += 3;
                    column += 3;
                    loop {
                        if i >= chars.len() {
                            return Err(GraphqlError::new("Unterminated string", Some(position)));
                        }
                        if chars[i] == '"' && chars.get(i + 1) == Some(&'"') && chars.get(i + 2) == Some(&'"') {
                            i += 3;
                            column += 3;
                            break;
                        }
                        if chars[i] == '\n' {
                            line += 1;
                            column = 1;
                        } else {
                            column += 1;
                        }
                        text.push(chars[i]);
                        i += 1;
                    }
                    tokens.push((Token::String(dedent_block(&text)), position));
                } else {
                    i += 1;
                    column += 1;
                    loop {
                        let Some(&ch) = chars.get(i) else {
                            return Err(GraphqlError::new("Unterminated string", Some(position)));
                        };
                        i += 1;
                        column += 1;
                        match ch {
                            '"' => break,
                            '\n' => return Err(GraphqlError::new("Unterminated string", Some(position))),
                            '\\' => {
                                let Some(&escaped) = chars.get(i) else {
                                    return Err(GraphqlError::new("Unterminated string", Some(position)));
                                };
                                i += 1;
                                column += 1;
                                match escaped {
                                    'n' => text.push('\n'),
                                    't' => text.push('\t'),
                                    'r' => text.push('\r'),
                                    'b' => text.push('\u{8}'),
                                    'f' => text.push('\u{c}'),
                                    'u' => {
                                        let hex: String = chars.iter().skip(i).take(4).collect();
                                        let code = u32::from_str_radix(&hex, 16)
                                            .ok()
                                            .and_then(char::from_u32)
                                            .ok_or_else(|| GraphqlError::new("Bad unicode escape", Some(position)))?;
                                        text.push(code);
                                        i += 4;
                                        column += 4;
                                    }
                                    other => text.push(other),
                                }
                            }
                            other => text.push(other),
                        }
                    }
                    tokens.push((Token::String(text), position));
                }
            }
            c if c == '-' || c.is_ascii_digit() => {
                let start = i;
                i += 1;
                let mut is_float = false;
                while i < chars.len() && (chars[i].is_ascii_digit() || matches!(chars[i], '.' | 'e' | 'E' | '+' | '-'))
                {
                    if matches!(chars[i], '.' | 'e' | 'E') {
                        is_float = true;
                    }
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                column += i - start;
                let token =
                    if is_float { text.parse().map(Token::Float).ok() } else { text.parse().map(Token::Int).ok() };
                let token = token.ok_or_else(|| {
                    GraphqlError::new(
                        format!("Parse error on \"{text}\" at [{}, {}]", position.line, position.column),
                        Some(position),
                    )
                })?;
                tokens.push((token, position));
            }
            c if c == '_' || c.is_ascii_alphabetic() => {
                let start = i;
                while i < chars.len() && (chars[i] == '_' || chars[i].is_ascii_alphanumeric()) {
                    i += 1;
                }
                column += i - start;
                tokens.push((Token::Name(chars[start..i].iter().collect()), position));
            }
            other => {
                return Err(GraphqlError::new(
                    format!("Parse error on \"{other}\" (error) at [{}, {}]", position.line, position.column),
                    Some(position),
                ));
            }
        }
    }
    tokens.push((Token::End, Position { line, column }));
    Ok(tokens)
}

/// Block strings drop the common indentation and the blank first and last lines (spec 2.9.4).
fn dedent_block(raw: &str) -> String {
    let lines: Vec<&str> = raw.split('\n').collect();
    let indent = lines
        .iter()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    let mut out: Vec<String> = lines
        .iter()
        .enumerate()
        .map(|(n, l)| if n == 0 { l.to_string() } else { l.chars().skip(indent).collect() })
        .collect();
    while out.first().is_some_and(|l| l.trim().is_empty()) {
        out.remove(0);
    }
    while out.last().is_some_and(|l| l.trim().is_empty()) {
        out.pop();
    }
    out.join("\n")
}

struct Parser {
    tokens: Vec<(Token, Position)>,
    at: usize,
    depth: usize,
}

pub fn parse(source: &str) -> Result<Document, GraphqlError> {
    let mut parser = Parser { tokens: lex(source)?, at: 0, depth: 0 };
    parser.document()
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.at.min(self.tokens.len() - 1)].0
    }

    fn position(&self) -> Position {
        self.tokens[self.at.min(self.tokens.len() - 1)].1
    }

    fn next(&mut self) -> Token {
        let token = self.peek().clone();
        if self.at < self.tokens.len() - 1 {
            self.at += 1;
        }
        token
    }

    fn unexpected(&self) -> GraphqlError {
        let position = self.position();
        GraphqlError::new(
            format!("Parse error on {} at [{}, {}]", self.peek().describe(), position.line, position.column),
            Some(position),
        )
    }

    fn is(&self, punctuator: &str) -> bool {
        matches!(self.peek(), Token::Punctuator(p) if *p == punctuator)
    }

    fn expect(&mut self, punctuator: &str) -> Result<(), GraphqlError> {
        if self.is(punctuator) {
            self.next();
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn name(&mut self) -> Result<String, GraphqlError> {
        match self.peek() {
            Token::Name(n) => {
                let n = n.clone();
                self.next();
                Ok(n)
            }
            _ => Err(self.unexpected()),
        }
    }

    fn document(&mut self) -> Result<Document, GraphqlError> {
        let mut document = Document::default();
        loop {
            let position = self.position();
            match self.peek().clone() {
                Token::End => break,
                Token::Punctuator("{") => {
                    let selection_set = self.selection_set()?;
                    document.operations.push(Operation {
                        kind: OperationKind::Query,
                        name: None,
                        variables: vec![],
                        directives: vec![],
                        selection_set,
                        position,
                    });
                }
                Token::Name(keyword) if keyword == "fragment" => {
                    self.next();
                    let name = self.name()?;
                    if self.name()? != "on" {
                        return Err(self.unexpected());
                    }
                    let type_condition = self.name()?;
                    self.directives()?;
                    let selection_set = self.selection_set()?;
                    document.fragments.push(Fragment { name, type_condition, selection_set });
                }
                Token::Name(keyword) if matches!(keyword.as_str(), "query" | "mutation" | "subscription") => {
                    self.next();
                    let kind = match keyword.as_str() {
                        "query" => OperationKind::Query,
                        "mutation" => OperationKind::Mutation,
                        _ => OperationKind::Subscription,
                    };
                    let name = match self.peek() {
                        Token::Name(_) => Some(self.name()?),
                        _ => None,
                    };
                    let variables = if self.is("(") { self.variable_definitions()? } else { vec![] };
                    let directives = self.directives()?;
                    let selection_set = self.selection_set()?;
                    document.operations.push(Operation { kind, name, variables, directives, selection_set, position });
                }
                _ => return Err(self.unexpected()),
            }
        }
        if document.operations.is_empty() {
            return Err(GraphqlError::new("Document does not contain any operations", None));
        }
        Ok(document)
    }

    fn variable_definitions(&mut self) -> Result<Vec<VariableDefinition>, GraphqlError> {
        self.expect("(")?;
        let mut definitions = Vec::new();
        while !self.is(")") {
            self.expect("$")?;
            let name = self.name()?;
            self.expect(":")?;
            let non_null = self.type_reference()?;
            let default = if self.is("=") {
                self.next();
                Some(self.value(true)?)
            } else {
                None
            };
            self.directives()?;
            definitions.push(VariableDefinition { name, non_null, default });
        }
        self.expect(")")?;
        Ok(definitions)
    }

    /// Parses a type like `[ID!]!` and says whether the outer type is non-null; the simulator
    /// does not type-check variables beyond presence.
    fn type_reference(&mut self) -> Result<bool, GraphqlError> {
        if self.is("[") {
            self.next();
            self.type_reference()?;
            self.expect("]")?;
        } else {
            self.name()?;
        }
        if self.is("!") {
            self.next();
            return Ok(true);
        }
        Ok(false)
    }

    fn directives(&mut self) -> Result<Vec<Directive>, GraphqlError> {
        let mut directives = Vec::new();
        while self.is("@") {
            self.next();
            let name = self.name()?;
            let arguments = if self.is("(") { self.arguments()? } else { vec![] };
            directives.push(Directive { name, arguments });
        }
        Ok(directives)
    }

    fn arguments(&mut self) -> Result<Vec<(String, Value)>, GraphqlError> {
        self.expect("(")?;
        let mut arguments = Vec::new();
        while !self.is(")") {
            let name = self.name()?;
            self.expect(":")?;
            arguments.push((name, self.value(false)?));
        }
        self.expect(")")?;
        Ok(arguments)
    }

    fn enter(&mut self) -> Result<(), GraphqlError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(GraphqlError::new("Document is nested too deeply", Some(self.position())));
        }
        Ok(())
    }

    fn value(&mut self, constant: bool) -> Result<Value, GraphqlError> {
        self.enter()?;
        let value = match self.next() {
            Token::Punctuator("$") if !constant => Value::Variable(self.name()?),
            Token::Int(i) => Value::Int(i),
            Token::Float(f) => Value::Float(f),
            Token::String(s) => Value::String(s),
            Token::Name(n) => match n.as_str() {
                "true" => Value::Boolean(true),
                "false" => Value::Boolean(false),
                "null" => Value::Null,
                _ => Value::Enum(n),
            },
            Token::Punctuator("[") => {
                let mut items = Vec::new();
                while !self.is("]") {
                    if matches!(self.peek(), Token::End) {
                        return Err(self.unexpected());
                    }
                    items.push(self.value(constant)?);
                }
                self.next();
                Value::List(items)
            }
            Token::Punctuator("{") => {
                let mut fields = Vec::new();
                while !self.is("}") {
                    let name = self.name()?;
                    self.expect(":")?;
                    fields.push((name, self.value(constant)?));
                }
                self.next();
                Value::Object(fields)
            }
            _ => {
                self.at = self.at.saturating_sub(1);
                return Err(self.unexpected());
            }
        };
        self.depth -= 1;
        Ok(value)
    }

    fn selection_set(&mut self) -> Result<Vec<Selection>, GraphqlError> {
        self.enter()?;
        self.expect("{")?;
        let mut selections = Vec::new();
        while !self.is("}") {
            let position = self.position();
            if self.is("...") {
                self.next();
                match self.peek().clone() {
                    Token::Name(n) if n != "on" => {
                        self.next();
                        self.directives()?;
                        selections.push(Selection::FragmentSpread { name: n, position });
                    }
                    _ => {
                        let type_condition = if matches!(self.peek(), Token::Name(n) if n == "on") {
                            self.next();
                            Some(self.name()?)
                        } else {
                            None
                        };
                        self.directives()?;
                        let selection_set = self.selection_set()?;
                        selections.push(Selection::InlineFragment { type_condition, selection_set });
                    }
                }
                continue;
            }
            let first = self.name()?;
            let (alias, name) = if self.is(":") {
                self.next();
                (Some(first), self.name()?)
            } else {
                (None, first)
            };
            let arguments = if self.is("(") { self.arguments()? } else { vec![] };
            let directives = self.directives()?;
            let selection_set = if self.is("{") { self.selection_set()? } else { vec![] };
            selections.push(Selection::Field(Field { alias, name, arguments, directives, selection_set, position }));
        }
        self.expect("}")?;
        if selections.is_empty() {
            return Err(self.unexpected());
        }
        self.depth -= 1;
        Ok(selections)
    }
}

/// A field after fragments are inlined and variables substituted: what the executor and the
/// cost calculator walk.
#[derive(Debug, Clone)]
pub struct ResolvedField {
    /// The response key: the alias if any, else the name.
    pub key: String,
    pub name: String,
    pub arguments: Map<String, Json>,
    pub directives: Vec<(String, Map<String, Json>)>,
    pub selections: Vec<ResolvedField>,
    /// Set for fields selected inside `... on Type`; they apply only to objects of that type.
    pub type_condition: Option<String>,
    pub position: Position,
}

impl ResolvedField {
    pub fn argument(&self, name: &str) -> Option<&Json> {
        self.arguments.get(name).filter(|v| !v.is_null())
    }

    pub fn directive(&self, name: &str) -> Option<&Map<String, Json>> {
        self.directives.iter().find(|(n, _)| n == name).map(|(_, a)| a)
    }
}

/// The operation chosen to run, with its root fields resolved.
#[derive(Debug, Clone)]
pub struct PreparedOperation {
    pub kind: OperationKind,
    pub fields: Vec<ResolvedField>,
}

/// Chooses the operation (by `operationName` when there are several), substitutes variables
/// and inlines fragments.
pub fn prepare(
    document: &Document,
    operation_name: Option<&str>,
    variables: &Map<String, Json>,
) -> Result<PreparedOperation, GraphqlError> {
    let operation = match operation_name {
        Some(name) => document
            .operations
            .iter()
            .find(|o| o.name.as_deref() == Some(name))
            .ok_or_else(|| GraphqlError::new(format!("No operation named \"{name}\""), None))?,
        None if document.operations.len() == 1 => &document.operations[0],
        None => {
            return Err(GraphqlError::new("An operation name is required", None));
        }
    };
    let mut values = Map::new();
    for definition in &operation.variables {
        let provided = variables.get(&definition.name).cloned();
        let value = match (provided, &definition.default) {
            (Some(v), _) => v,
            (None, Some(default)) => to_json(default, &Map::new())?,
            (None, None) => Json::Null,
        };
        if value.is_null() && definition.non_null {
            return Err(GraphqlError::new(
                format!(
                    "Variable ${} of type was provided invalid value (Expected value to not be null)",
                    definition.name
                ),
                Some(operation.position),
            ));
        }
        values.insert(definition.name.clone(), value);
    }
    let mut fields = Vec::new();
    resolve_selections(&operation.selection_set, document, &values, None, 0, &mut fields)?;
    Ok(PreparedOperation { kind: operation.kind, fields })
}

fn resolve_selections(
    selections: &[Selection],
    document: &Document,
    variables: &Map<String, Json>,
    type_condition: Option<&str>,
    depth: usize,
    out: &mut Vec<ResolvedField>,
) -> Result<(), GraphqlError> {
    if depth > MAX_DEPTH {
        return Err(GraphqlError::new("Document is nested too deeply (fragment cycle?)", None));
    }
    for selection in selections {
        match selection {
            Selection::Field(field) => {
                let mut arguments = Map::new();
                for (name, value) in &field.arguments {
                    arguments.insert(name.clone(), to_json(value, variables)?);
                }
                let mut directives = Vec::new();
                for directive in &field.directives {
                    let mut arguments = Map::new();
                    for (name, value) in &directive.arguments {
                        arguments.insert(name.clone(), to_json(value, variables)?);
                    }
                    directives.push((directive.name.clone(), arguments));
                }
                if skipped(&directives) {
                    continue;
                }
                let mut children = Vec::new();
                resolve_selections(&field.selection_set, document, variables, None, depth + 1, &mut children)?;
                out.push(ResolvedField {
                    key: field.alias.clone().unwrap_or_else(|| field.name.clone()),
                    name: field.name.clone(),
                    arguments,
                    directives,
                    selections: children,
                    type_condition: type_condition.map(str::to_string),
                    position: field.position,
                });
            }
            Selection::FragmentSpread { name, position } => {
                let fragment = document.fragments.iter().find(|f| &f.name == name).ok_or_else(|| {
                    GraphqlError::new(format!("Fragment {name} was used, but not defined"), Some(*position))
                })?;
                resolve_selections(
                    &fragment.selection_set,
                    document,
                    variables,
                    Some(&fragment.type_condition),
                    depth + 1,
                    out,
                )?;
            }
            Selection::InlineFragment { type_condition: condition, selection_set } => {
                let condition = condition.as_deref().or(type_condition);
                resolve_selections(selection_set, document, variables, condition, depth + 1, out)?;
            }
        }
    }
    Ok(())
}

/// `@skip(if:)` and `@include(if:)` are part of the spec every client may use.
fn skipped(directives: &[(String, Map<String, Json>)]) -> bool {
    directives.iter().any(|(name, arguments)| {
        let condition = arguments.get("if").and_then(Json::as_bool).unwrap_or(false);
        (name == "skip" && condition) || (name == "include" && !condition)
    })
}

pub fn to_json(value: &Value, variables: &Map<String, Json>) -> Result<Json, GraphqlError> {
    Ok(match value {
        Value::Variable(name) => variables.get(name).cloned().ok_or_else(|| {
            GraphqlError::new(format!("Variable ${name} is used by anonymous query but not declared"), None)
        })?,
        Value::Int(i) => Json::from(*i),
        Value::Float(f) => serde_json::Number::from_f64(*f).map(Json::Number).unwrap_or(Json::Null),
        Value::String(s) => Json::String(s.clone()),
        Value::Boolean(b) => Json::Bool(*b),
        Value::Null => Json::Null,
        Value::Enum(e) => Json::String(e.clone()),
        Value::List(items) => Json::Array(items.iter().map(|i| to_json(i, variables)).collect::<Result<_, _>>()?),
        Value::Object(fields) => {
            let mut object = Map::new();
            for (name, value) in fields {
                object.insert(name.clone(), to_json(value, variables)?);
            }
            Json::Object(object)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_operation_with_variables_directives_and_fragments() {
        let source = r#"
            mutation Set($input: [InventorySetQuantityInput!]!, $key: String!) @x {
              inventorySetQuantities(input: {name: "available", quantities: $input}) @idempotent(key: $key) {
                userErrors { ...E }
              }
            }
            fragment E on UserError { field message }
        "#;
        let document = parse(source).unwrap();
        let mut variables = Map::new();
        variables.insert("input".into(), serde_json::json!([{"quantity": 1}]));
        variables.insert("key".into(), serde_json::json!("k1"));
        let prepared = prepare(&document, None, &variables).unwrap();
        assert_eq!(prepared.kind, OperationKind::Mutation);
        let field = &prepared.fields[0];
        assert_eq!(field.name, "inventorySetQuantities");
        assert_eq!(field.arguments["input"]["quantities"][0]["quantity"], 1);
        assert_eq!(field.directive("idempotent").unwrap()["key"], "k1");
        assert_eq!(field.selections[0].selections.len(), 2);
    }

    #[test]
    fn reports_the_location_of_a_syntax_error() {
        let error = parse("{ products(first: 10) { edges { node { id } }").unwrap_err();
        assert_eq!(error.position, Some(Position { line: 1, column: 46 }));
        assert!(error.message.starts_with("Parse error on end of file"), "{}", error.message);
    }
}
