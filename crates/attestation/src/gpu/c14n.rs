//! Canonical XML (W3C C14N 1.0 / 1.1 without comments, *inclusive*) over a `roxmltree` document:
//! the form NVIDIA's RIM signatures are computed over (`CanonicalizationMethod` is
//! `http://www.w3.org/2006/12/xml-c14n11`; testdata/gpu/README.md §6.3).
//!
//! Inclusive, not exclusive: a canonicalised subtree carries every namespace in scope at its apex
//! (the signed `ds:SignedInfo` starts with the SWID default namespace, `ns0` and `ns2` declared on
//! the document element). No maintained Rust crate does inclusive C14N over a parsed tree with the
//! original prefixes, so it is written here and tested against the canonical forms committed in
//! `testdata/gpu/derived/` (which reproduce NVIDIA's digests and signatures).
//!
//! roxmltree resolves names to (namespace URI, local name) and drops prefixes; C14N must write the
//! prefixes as they were, so qualified names are read back from the source text by range.
//! Refused rather than approximated: `xml:*` attributes on the ancestors of a subset apex (C14N 1.1
//! inheritance rules), which NVIDIA's RIMs never use.

use roxmltree::{Node, NodeType};

/// What a canonicalisation cannot do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct C14nError(pub(crate) String);

const XML_NS: &str = "http://www.w3.org/XML/1998/namespace";

/// Canonicalises the subtree at `apex` (an element), leaving out the element `exclude` and its
/// subtree (the enveloped-signature transform). For the whole document pass the root element.
pub(crate) fn canonicalize(apex: Node<'_, '_>, exclude: Option<Node<'_, '_>>) -> Result<Vec<u8>, C14nError> {
    if !apex.is_element() {
        return Err(C14nError("the apex is not an element".into()));
    }
    let whole_document = apex.parent().is_some_and(|p| p.is_root());
    if !whole_document
        && apex
            .ancestors()
            .skip(1)
            .filter(Node::is_element)
            .any(|a| a.attributes().any(|x| x.namespace() == Some(XML_NS)))
    {
        return Err(C14nError(
            "xml:* attributes on the ancestors of the canonicalised element are not supported".into(),
        ));
    }
    let mut out = Vec::with_capacity(apex.range().len());
    if whole_document {
        // Document-level PIs around the document element (comments are dropped).
        let root = apex.parent();
        let mut before = true;
        for n in root.iter().flat_map(|r| r.children()) {
            if n == apex {
                before = false;
                element(&mut out, apex, exclude, true)?;
            } else if n.node_type() == NodeType::PI {
                if !before {
                    out.push(b'\n');
                }
                pi(&mut out, n);
                if before {
                    out.push(b'\n');
                }
            }
        }
    } else {
        element(&mut out, apex, exclude, true)?;
    }
    Ok(out)
}

/// The qualified name as written in the source (`ns0:Entity`).
fn element_qname<'a>(n: Node<'_, 'a>) -> Result<&'a str, C14nError> {
    let text = n.document().input_text();
    let start = n.range().start.saturating_add(1);
    let rest = text
        .get(start..)
        .ok_or_else(|| C14nError("element range outside the input".into()))?;
    let end = rest
        .find(|c: char| c.is_ascii_whitespace() || c == '>' || c == '/')
        .ok_or_else(|| C14nError("unterminated start tag".into()))?;
    rest.get(..end)
        .filter(|q| !q.is_empty())
        .ok_or_else(|| C14nError("empty element name".into()))
}

/// In-scope namespaces `(prefix, uri)` of an element, `""` for the default one, sorted as C14N
/// writes them; an empty URI for the default means "no default namespace".
fn in_scope(n: Node<'_, '_>) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = n
        .namespaces()
        .filter(|ns| ns.name() != Some("xml"))
        .map(|ns| (ns.name().unwrap_or("").to_owned(), ns.uri().to_owned()))
        .collect();
    v.sort();
    v.dedup_by(|a, b| a.0 == b.0);
    v
}

fn element(
    out: &mut Vec<u8>,
    n: Node<'_, '_>,
    exclude: Option<Node<'_, '_>>,
    apex: bool,
) -> Result<(), C14nError> {
    let qname = element_qname(n)?;
    out.push(b'<');
    out.extend_from_slice(qname.as_bytes());
    // Namespace declarations: all in scope at the apex; below it, only those that differ from the
    // parent's (the parent is always output here: we never skip an element except `exclude`).
    let mine = in_scope(n);
    let parent = if apex {
        Vec::new()
    } else {
        n.parent_element().map(in_scope).unwrap_or_default()
    };
    let default_of = |v: &[(String, String)]| {
        v.iter()
            .find(|(p, _)| p.is_empty())
            .map(|(_, u)| u.clone())
            .unwrap_or_default()
    };
    let (my_default, parent_default) = (default_of(&mine), default_of(&parent));
    if my_default != parent_default {
        out.extend_from_slice(b" xmlns=\"");
        attr_text(out, &my_default);
        out.push(b'"');
    }
    for (prefix, uri) in mine.iter().filter(|(p, _)| !p.is_empty()) {
        if parent.iter().any(|(p, u)| p == prefix && u == uri) {
            continue;
        }
        out.extend_from_slice(b" xmlns:");
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(b"=\"");
        attr_text(out, uri);
        out.push(b'"');
    }
    // Attributes: by (namespace URI, local name), un-namespaced first.
    let text = n.document().input_text();
    let mut attrs: Vec<(&str, &str, &str, &str)> = Vec::new();
    for a in n.attributes() {
        let q = text
            .get(a.range_qname())
            .ok_or_else(|| C14nError("attribute range outside the input".into()))?;
        attrs.push((a.namespace().unwrap_or(""), a.name(), q, a.value()));
    }
    attrs.sort_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    for (_, _, q, v) in attrs {
        out.push(b' ');
        out.extend_from_slice(q.as_bytes());
        out.extend_from_slice(b"=\"");
        attr_text(out, v);
        out.push(b'"');
    }
    out.push(b'>');
    for c in n.children() {
        if Some(c) == exclude {
            continue;
        }
        match c.node_type() {
            NodeType::Element => element(out, c, exclude, false)?,
            NodeType::Text => node_text(out, c.text().unwrap_or("")),
            NodeType::PI => pi(out, c),
            NodeType::Comment | NodeType::Root => {}
        }
    }
    out.extend_from_slice(b"</");
    out.extend_from_slice(qname.as_bytes());
    out.push(b'>');
    Ok(())
}

fn pi(out: &mut Vec<u8>, n: Node<'_, '_>) {
    if let Some(p) = n.pi() {
        out.extend_from_slice(b"<?");
        out.extend_from_slice(p.target.as_bytes());
        if let Some(v) = p.value.filter(|v| !v.is_empty()) {
            out.push(b' ');
            out.extend_from_slice(v.as_bytes());
        }
        out.extend_from_slice(b"?>");
    }
}

fn node_text(out: &mut Vec<u8>, s: &str) {
    for ch in s.chars() {
        match ch {
            '&' => out.extend_from_slice(b"&amp;"),
            '<' => out.extend_from_slice(b"&lt;"),
            '>' => out.extend_from_slice(b"&gt;"),
            '\r' => out.extend_from_slice(b"&#xD;"),
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

fn attr_text(out: &mut Vec<u8>, s: &str) {
    for ch in s.chars() {
        match ch {
            '&' => out.extend_from_slice(b"&amp;"),
            '<' => out.extend_from_slice(b"&lt;"),
            '"' => out.extend_from_slice(b"&quot;"),
            '\t' => out.extend_from_slice(b"&#x9;"),
            '\n' => out.extend_from_slice(b"&#xA;"),
            '\r' => out.extend_from_slice(b"&#xD;"),
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c14n(xml: &str) -> String {
        let doc = roxmltree::Document::parse(xml).unwrap();
        String::from_utf8(canonicalize(doc.root_element(), None).unwrap()).unwrap()
    }

    #[test]
    fn w3c_rules() {
        // Empty elements expand, attributes sort (un-namespaced first, then by URI), namespace
        // declarations come first (default, then by prefix), superfluous ones vanish, the XML
        // declaration and comments go, character references are normalised.
        let got = c14n(
            "<?xml version=\"1.0\"?>\n<!-- c -->\n<a xmlns:z=\"urn:z\" xmlns=\"urn:d\" b=\"2\" z:a=\"1\" a=\"&#65;&amp;&lt;\">\
             <z:b xmlns:z=\"urn:z\" xmlns:y=\"urn:y\"/>t&gt;&#13;<!-- x --><?p  q?></a>",
        );
        assert_eq!(
            got,
            "<a xmlns=\"urn:d\" xmlns:z=\"urn:z\" a=\"A&amp;&lt;\" b=\"2\" z:a=\"1\">\
             <z:b xmlns:y=\"urn:y\"></z:b>t&gt;&#xD;<?p q?></a>"
        );
        // Un-declaring the default namespace is written out.
        assert_eq!(
            c14n("<a xmlns=\"urn:d\"><b xmlns=\"\"/></a>"),
            "<a xmlns=\"urn:d\"><b xmlns=\"\"></b></a>"
        );
        // Attribute whitespace is escaped.
        assert_eq!(
            c14n("<a x=\"&#9;&#10;&quot;\"/>"),
            "<a x=\"&#x9;&#xA;&quot;\"></a>"
        );
    }

    #[test]
    fn subset_carries_inherited_namespaces() {
        let doc =
            roxmltree::Document::parse("<r xmlns=\"urn:d\" xmlns:p=\"urn:p\"><p:s><t/></p:s></r>").unwrap();
        let s = doc.root_element().first_element_child().unwrap();
        let out = String::from_utf8(canonicalize(s, None).unwrap()).unwrap();
        assert_eq!(out, "<p:s xmlns=\"urn:d\" xmlns:p=\"urn:p\"><t></t></p:s>");
        let doc = roxmltree::Document::parse("<r xml:lang=\"en\"><s/></r>").unwrap();
        let s = doc.root_element().first_element_child().unwrap();
        assert!(canonicalize(s, None).is_err());
    }
}
