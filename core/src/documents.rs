//! Reading Kubernetes documents: JSON or YAML (one document), and multi-document YAML streams whose
//! syntax errors name the document and the line in the whole input. Every reader of manifests, pods,
//! config dumps and chart output goes through here.

use serde_json::Value;

/// A document that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("document {document}, line {line}: {reason}")]
pub struct DocumentError {
    /// 1-based document number in the stream.
    pub document: usize,
    /// 1-based line in the whole input.
    pub line: usize,
    /// What the parser said.
    pub reason: String,
}

/// Whether `bytes` hold JSON (the first non-blank byte opens an object or an array); YAML otherwise.
pub fn is_json(bytes: &[u8]) -> bool {
    matches!(bytes.iter().find(|b| !b.is_ascii_whitespace()), Some(b'{' | b'['))
}

/// One document, JSON or YAML (told apart by [`is_json`]).
pub fn parse_one(text: &str) -> Result<Value, DocumentError> {
    if is_json(text.as_bytes()) {
        return serde_json::from_str(text).map_err(|e| DocumentError {
            document: 1,
            line: e.line(),
            reason: e.to_string(),
        });
    }
    let docs = parse_documents(text)?;
    match docs.len() {
        1 => Ok(docs.into_iter().next().unwrap_or(Value::Null)),
        0 => Err(DocumentError { document: 1, line: 1, reason: "empty document".into() }),
        n => Err(DocumentError { document: 2, line: 1, reason: format!("{n} documents where one was expected") }),
    }
}

/// A multi-document YAML stream (`---` separators, `...` ends). Empty documents are dropped; a
/// syntax error names the document and its line in the whole input.
pub fn parse_documents(text: &str) -> Result<Vec<Value>, DocumentError> {
    let mut docs = Vec::new();
    for (index, (start_line, chunk)) in split_documents(text).into_iter().enumerate() {
        let parsed: Value = serde_saphyr::from_str(&chunk).map_err(|e| {
            let relative = e.location().map_or(1, |l| l.line() as usize);
            let message = e.to_string();
            let first = message.lines().next().unwrap_or_default();
            let reason = first.trim_start_matches("error: ");
            let reason = match reason.split_once(": ") {
                Some((place, rest)) if place.starts_with("line ") => rest,
                _ => reason,
            };
            DocumentError { document: index + 1, line: start_line + relative - 1, reason: reason.to_owned() }
        })?;
        if !parsed.is_null() {
            docs.push(parsed);
        }
    }
    Ok(docs)
}

/// Splits on `---` lines; returns each document with the 1-based line it starts on. A directive
/// line's content (`--- a: 1`) belongs to the next document.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (i, line) in text.lines().enumerate() {
        let is_separator = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if is_separator || line == "..." {
            if !current.trim().is_empty() {
                out.push((start, std::mem::take(&mut current)));
            }
            current.clear();
            start = i + 1;
            if let Some(rest) = line.strip_prefix("---").filter(|r| !r.trim().is_empty()) {
                current.push_str(rest.trim_start());
                current.push('\n');
            } else {
                start = i + 2;
            }
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    if !current.trim().is_empty() {
        out.push((start, current));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn streams_split_on_separators_and_drop_empty_documents() {
        let docs = parse_documents("a: 1\n---\n---\nb: 2\n...\n--- c: 3\n").unwrap();
        assert_eq!(docs, vec![json!({"a": 1}), json!({"b": 2}), json!({"c": 3})]);
    }

    #[test]
    fn errors_name_the_document_and_the_line_of_the_whole_input() {
        let docs = split_documents("a: 1\n---\nb: 2\n\n--- c: 3\n...\n");
        assert_eq!(docs.iter().map(|(l, _)| *l).collect::<Vec<_>>(), [1, 3, 5]);
        let err = parse_documents("kind: Pod\n---\nkind: Pod\nmetadata: [\n  x: 1\n").unwrap_err();
        assert_eq!(err.document, 2, "{err}");
        assert!(err.line >= 4, "{err}");
    }

    #[test]
    fn one_document_is_json_or_yaml() {
        assert_eq!(parse_one(" {\"a\": [1]}").unwrap(), json!({"a": [1]}));
        assert_eq!(parse_one("a:\n  - 1\n").unwrap(), json!({"a": [1]}));
        assert!(parse_one("{\"a\": ").unwrap_err().reason.contains("EOF"));
        assert!(parse_one("a: 1\n---\nb: 2\n").unwrap_err().reason.contains("2 documents"));
        assert!(is_json(b"\n [1]") && !is_json(b"kind: Pod"));
    }
}
