//! XML-RPC for `/xmlrpc/2/{common,object,db}`: a small reader for `methodCall` documents, the
//! `methodResponse` writer (with `<nil/>`, as Odoo marshals with `allow_none`), and faults
//! with Odoo's integer codes.

use serde_json::{Map, Value};

use super::error::{ErrorKind, OdooError};

/// Nesting deeper than this is refused: no real call needs it, and it bounds the recursion.
const MAX_DEPTH: usize = 64;

#[derive(Debug)]
enum Node {
    Element(Element),
    Text(String),
}

#[derive(Debug, Default)]
struct Element {
    name: String,
    children: Vec<Node>,
}

impl Element {
    fn elements(&self) -> impl Iterator<Item = &Element> {
        self.children.iter().filter_map(|node| match node {
            Node::Element(element) => Some(element),
            Node::Text(_) => None,
        })
    }
    fn child(&self, name: &str) -> Option<&Element> {
        self.elements().find(|element| element.name == name)
    }
    fn text(&self) -> String {
        self.children
            .iter()
            .filter_map(|node| match node {
                Node::Text(text) => Some(text.as_str()),
                Node::Element(_) => None,
            })
            .collect()
    }
}

fn unescape(text: &str) -> Result<String, String> {
    let mut result = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(position) = rest.find('&') {
        result.push_str(&rest[..position]);
        let end = rest[position..].find(';').ok_or("unterminated entity")? + position;
        let entity = &rest[position + 1..end];
        let decoded = match entity {
            "lt" => '<',
            "gt" => '>',
            "amp" => '&',
            "quot" => '"',
            "apos" => '\'',
            _ => {
                let code = if let Some(hex) = entity.strip_prefix("#x") {
                    u32::from_str_radix(hex, 16).ok()
                } else {
                    entity.strip_prefix('#').and_then(|decimal| decimal.parse().ok())
                };
                code.and_then(char::from_u32).ok_or_else(|| format!("undefined entity &{entity};"))?
            }
        };
        result.push(decoded);
        rest = &rest[end + 1..];
    }
    result.push_str(rest);
    Ok(result)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Parses a document into its root element.
fn parse_document(text: &str) -> Result<Element, String> {
    let mut stack: Vec<Element> = vec![Element::default()];
    let mut rest = text;
    while !rest.is_empty() {
        let Some(open) = rest.find('<') else {
            let tail = unescape(rest)?;
            if let Some(top) = stack.last_mut() {
                top.children.push(Node::Text(tail));
            }
            break;
        };
        if open > 0 {
            let content = unescape(&rest[..open])?;
            if let Some(top) = stack.last_mut() {
                top.children.push(Node::Text(content));
            }
        }
        rest = &rest[open..];
        if let Some(after) = rest.strip_prefix("<?") {
            rest = &after[after.find("?>").ok_or("unterminated processing instruction")? + 2..];
            continue;
        }
        if let Some(after) = rest.strip_prefix("<!--") {
            rest = &after[after.find("-->").ok_or("unterminated comment")? + 3..];
            continue;
        }
        if rest.starts_with("<!") {
            return Err("document type declarations are not accepted".into());
        }
        let close = rest.find('>').ok_or("unterminated tag")?;
        let tag = &rest[1..close];
        rest = &rest[close + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let element = stack.pop().ok_or("unbalanced end tag")?;
            if element.name != name.trim() {
                return Err(format!("mismatched tag: expected </{}>, found </{}>", element.name, name.trim()));
            }
            let parent = stack.last_mut().ok_or("unbalanced end tag")?;
            parent.children.push(Node::Element(element));
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let name = tag.split_whitespace().next().ok_or("empty tag")?.to_owned();
        if self_closing {
            let parent = stack.last_mut().ok_or("unbalanced tag")?;
            parent.children.push(Node::Element(Element { name, children: Vec::new() }));
        } else {
            if stack.len() > MAX_DEPTH {
                return Err("document nested too deeply".into());
            }
            stack.push(Element { name, children: Vec::new() });
        }
    }
    if stack.len() != 1 {
        return Err("unclosed element".into());
    }
    let document = stack.pop().unwrap_or_default();
    document
        .children
        .into_iter()
        .find_map(|node| match node {
            Node::Element(element) => Some(element),
            Node::Text(_) => None,
        })
        .ok_or_else(|| "no root element".into())
}

fn value_of(element: &Element, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err("value nested too deeply".into());
    }
    let Some(typed) = element.elements().next() else {
        // An untyped value is a string.
        return Ok(Value::String(element.text()));
    };
    let text = typed.text();
    Ok(match typed.name.as_str() {
        "string" | "dateTime.iso8601" | "base64" => Value::String(text),
        "int" | "i4" | "i8" => Value::from(text.trim().parse::<i64>().map_err(|_| format!("bad integer {text:?}"))?),
        "boolean" => Value::Bool(text.trim() == "1"),
        "double" => Value::from(text.trim().parse::<f64>().map_err(|_| format!("bad double {text:?}"))?),
        "nil" => Value::Null,
        "array" => {
            let data = typed.child("data").ok_or("array without data")?;
            Value::Array(data.elements().map(|value| value_of(value, depth + 1)).collect::<Result<_, _>>()?)
        }
        "struct" => {
            let mut map = Map::new();
            for member in typed.elements() {
                let name = member.child("name").ok_or("member without name")?.text();
                let value = member.child("value").ok_or("member without value")?;
                map.insert(name, value_of(value, depth + 1)?);
            }
            Value::Object(map)
        }
        other => return Err(format!("unknown type {other}")),
    })
}

/// Reads `<methodCall>`: the method name and the positional parameters.
pub fn parse_method_call(text: &str) -> Result<(String, Vec<Value>), String> {
    let root = parse_document(text)?;
    if root.name != "methodCall" {
        return Err(format!("expected methodCall, found {}", root.name));
    }
    let method = root.child("methodName").ok_or("methodCall without methodName")?.text().trim().to_owned();
    let mut params = Vec::new();
    if let Some(list) = root.child("params") {
        for param in list.elements() {
            let value = param.child("value").ok_or("param without value")?;
            params.push(value_of(value, 0)?);
        }
    }
    Ok((method, params))
}

fn write_value(value: &Value, out: &mut String) {
    out.push_str("<value>");
    match value {
        Value::Null => out.push_str("<nil/>"),
        Value::Bool(flag) => out.push_str(if *flag { "<boolean>1</boolean>" } else { "<boolean>0</boolean>" }),
        Value::Number(number) => match number.as_i64() {
            Some(integer) => out.push_str(&format!("<int>{integer}</int>")),
            None => out.push_str(&format!("<double>{}</double>", number.as_f64().unwrap_or(0.0))),
        },
        Value::String(text) => {
            out.push_str("<string>");
            out.push_str(&escape(text));
            out.push_str("</string>");
        }
        Value::Array(items) => {
            out.push_str("<array><data>\n");
            for item in items {
                write_value(item, out);
                out.push('\n');
            }
            out.push_str("</data></array>");
        }
        Value::Object(map) => {
            out.push_str("<struct>\n");
            for (name, item) in map {
                out.push_str("<member>\n<name>");
                out.push_str(&escape(name));
                out.push_str("</name>\n");
                write_value(item, out);
                out.push_str("\n</member>\n");
            }
            out.push_str("</struct>");
        }
    }
    out.push_str("</value>");
}

pub fn method_response(value: &Value) -> String {
    let mut out = String::from("<?xml version='1.0'?>\n<methodResponse>\n<params>\n<param>\n");
    write_value(value, &mut out);
    out.push_str("\n</param>\n</params>\n</methodResponse>\n");
    out
}

pub fn fault(code: i64, message: &str) -> String {
    let mut detail = Map::new();
    detail.insert("faultCode".into(), Value::from(code));
    detail.insert("faultString".into(), Value::String(message.to_owned()));
    let mut out = String::from("<?xml version='1.0'?>\n<methodResponse>\n<fault>\n");
    write_value(&Value::Object(detail), &mut out);
    out.push_str("\n</fault>\n</methodResponse>\n");
    out
}

/// Odoo's `/xmlrpc/2/` fault codes: 4 access error, 3 access denied, 2 user errors (message
/// only), 1 anything else (with the traceback).
pub fn fault_for(error: &OdooError) -> String {
    match error.kind {
        ErrorKind::AccessError => fault(4, &error.message),
        ErrorKind::AccessDenied => fault(3, &error.message),
        ErrorKind::UserError | ErrorKind::ValidationError | ErrorKind::MissingError => fault(2, &error.message),
        _ => {
            let serialized = error.serialize();
            fault(1, serialized["debug"].as_str().unwrap_or(&error.message))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{method_response, parse_method_call};

    #[test]
    fn reads_a_method_call() {
        let text = "<?xml version='1.0'?>\n<methodCall>\n<methodName>execute_kw</methodName>\n<params>\n\
            <param><value><string>odoo</string></value></param>\n\
            <param><value><int>2</int></value></param>\n\
            <param><value>a &amp; b</value></param>\n\
            <param><value><array><data><value><array><data><value><array><data>\
            <value><string>name</string></value><value><string>=</string></value><value><boolean>1</boolean></value>\
            </data></array></value></data></array></value></data></array></value></param>\n\
            <param><value><struct><member><name>limit</name><value><i4>5</i4></value></member>\
            <member><name>x</name><value><nil/></value></member></struct></value></param>\n\
            </params>\n</methodCall>\n";
        let (method, params) = parse_method_call(text).expect("parses");
        assert_eq!(method, "execute_kw");
        assert_eq!(
            params,
            vec![
                json!("odoo"),
                json!(2),
                json!("a & b"),
                json!([[["name", "=", true]]]),
                json!({"limit": 5, "x": null})
            ]
        );
    }

    #[test]
    fn writes_a_response() {
        let text = method_response(&json!([{"id": 1, "name": "A<B", "active": false, "price": 1.5}]));
        assert!(text.contains("<name>name</name>\n<value><string>A&lt;B</string></value>"));
        assert!(text.contains("<value><boolean>0</boolean></value>"));
        assert!(text.contains("<value><double>1.5</double></value>"));
    }
}
