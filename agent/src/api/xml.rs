//! XML responses, written with `quick-xml` (which escapes text): the EC2 shape
//! (`<ActionResponse xmlns="…/2016-11-15/"><requestId>…</requestId>…`, lists as `<x><item>…`),
//! its error shape, and STS's (`<…Result>` and `<ResponseMetadata>`).

use std::fmt::Display;

use quick_xml::{
    Writer,
    events::{BytesDecl, BytesEnd, BytesStart, BytesText, Event},
};

use super::error::ApiError;

pub const EC2_NAMESPACE: &str = "http://ec2.amazonaws.com/doc/2016-11-15/";
pub const STS_NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

/// An XML document being written. Writing into memory cannot fail, so the writer's
/// `io::Result`s are dropped where they arise.
pub struct Xml {
    writer: Writer<Vec<u8>>,
}

impl Xml {
    fn new() -> Self {
        let mut xml = Self {
            writer: Writer::new(Vec::new()),
        };
        xml.event(Event::Decl(BytesDecl::new("1.0", Some("UTF-8"), None)));
        xml
    }

    fn event(&mut self, event: Event<'_>) {
        let _ = self.writer.write_event(event);
    }

    fn open(&mut self, name: &str, namespace: Option<&str>) {
        let mut start = BytesStart::new(name);
        if let Some(namespace) = namespace {
            start.push_attribute(("xmlns", namespace));
        }
        self.event(Event::Start(start));
    }

    fn close(&mut self, name: &str) {
        self.event(Event::End(BytesEnd::new(name)));
    }

    fn finish(self) -> Vec<u8> {
        self.writer.into_inner()
    }

    /// `<name>value</name>`.
    pub fn text(&mut self, name: &str, value: impl Display) {
        self.open(name, None);
        self.event(Event::Text(BytesText::new(&value.to_string())));
        self.close(name);
    }

    /// `<name>value</name>` when there is a value; nothing otherwise (AWS omits absent members).
    pub fn optional(&mut self, name: &str, value: Option<impl Display>) {
        if let Some(value) = value {
            self.text(name, value);
        }
    }

    /// `<name>…</name>` around what `body` writes.
    pub fn element(&mut self, name: &str, body: impl FnOnce(&mut Xml)) {
        self.open(name, None);
        body(self);
        self.close(name);
    }

    /// `<name><item>…</item>…</name>`: an EC2 list. An empty list is written empty, as AWS does.
    pub fn items<T>(
        &mut self,
        name: &str,
        items: impl IntoIterator<Item = T>,
        mut item: impl FnMut(&mut Xml, T),
    ) {
        self.element(name, |xml| {
            for value in items {
                xml.element("item", |xml| item(xml, value));
            }
        });
    }

    /// `<tagSet>` of key/value pairs.
    pub fn tag_set<'a>(&mut self, name: &str, tags: impl IntoIterator<Item = (&'a str, &'a str)>) {
        self.items(name, tags, |xml, (key, value)| {
            xml.text("key", key);
            xml.text("value", value);
        });
    }
}

/// An EC2 response: `<{action}Response xmlns=…><requestId>…</requestId>…</{action}Response>`.
pub fn ec2_response(action: &str, request_id: &str, body: impl FnOnce(&mut Xml)) -> Vec<u8> {
    let mut xml = Xml::new();
    let root = format!("{action}Response");
    xml.open(&root, Some(EC2_NAMESPACE));
    xml.text("requestId", request_id);
    body(&mut xml);
    xml.close(&root);
    xml.finish()
}

/// The EC2 error shape.
pub fn ec2_error(error: &ApiError, request_id: &str) -> Vec<u8> {
    let mut xml = Xml::new();
    xml.element("Response", |xml| {
        xml.element("Errors", |xml| {
            xml.element("Error", |xml| {
                xml.text("Code", error.code);
                xml.text("Message", &error.message);
            });
        });
        xml.text("RequestID", request_id);
    });
    xml.finish()
}

/// An STS response: `<{action}Response><{action}Result>…</…Result><ResponseMetadata>…`.
pub fn sts_response(action: &str, request_id: &str, body: impl FnOnce(&mut Xml)) -> Vec<u8> {
    let mut xml = Xml::new();
    let root = format!("{action}Response");
    xml.open(&root, Some(STS_NAMESPACE));
    xml.element(&format!("{action}Result"), body);
    xml.element("ResponseMetadata", |xml| xml.text("RequestId", request_id));
    xml.close(&root);
    xml.finish()
}

/// STS's error shape.
pub fn sts_error(error: &ApiError, request_id: &str) -> Vec<u8> {
    let mut xml = Xml::new();
    xml.open("ErrorResponse", Some(STS_NAMESPACE));
    xml.element("Error", |xml| {
        xml.text(
            "Type",
            if error.status.is_server_error() {
                "Receiver"
            } else {
                "Sender"
            },
        );
        xml.text("Code", error.code);
        xml.text("Message", &error.message);
    });
    xml.text("RequestId", request_id);
    xml.close("ErrorResponse");
    xml.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(bytes: Vec<u8>) -> String {
        String::from_utf8(bytes).expect("utf-8")
    }

    #[test]
    fn ec2_responses_and_lists_have_the_query_protocol_shape() {
        let body = ec2_response("CreateSecurityGroup", "r-1", |xml| {
            xml.text("groupId", "sg-1");
            xml.tag_set("tagSet", [("Name", "a<b")]);
            xml.optional("absent", None::<&str>);
        });
        assert_eq!(
            text(body),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\
             <CreateSecurityGroupResponse xmlns=\"http://ec2.amazonaws.com/doc/2016-11-15/\">\
             <requestId>r-1</requestId><groupId>sg-1</groupId>\
             <tagSet><item><key>Name</key><value>a&lt;b</value></item></tagSet>\
             </CreateSecurityGroupResponse>"
        );
    }

    #[test]
    fn errors_have_the_ec2_and_sts_shapes() {
        let error = ApiError::group_not_found("sg-1");
        assert_eq!(
            text(ec2_error(&error, "r-2")),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error>\
             <Code>InvalidGroup.NotFound</Code>\
             <Message>The security group &apos;sg-1&apos; does not exist</Message>\
             </Error></Errors><RequestID>r-2</RequestID></Response>"
        );
        let sts = text(sts_error(&ApiError::auth_failure("no"), "r-3"));
        assert!(
            sts.contains("<Error><Type>Sender</Type><Code>AuthFailure</Code>"),
            "{sts}"
        );
        let ok = text(sts_response("GetCallerIdentity", "r-4", |xml| {
            xml.text("Account", "000000000000")
        }));
        assert!(
            ok.contains("<GetCallerIdentityResult><Account>000000000000</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>r-4</RequestId></ResponseMetadata>"),
            "{ok}"
        );
    }
}
