//! The standard operations of a resource — list, get, delete — described once per resource
//! (a [`Standard`] constant next to its `Resource` in its module) and written into the
//! document by [`super::CustomerApi`]'s modifier. Their handlers are one call of the shared
//! `Resource` helpers, so their documentation is one declaration too.

use utoipa::openapi::path::{
    HttpMethod, Operation, OperationBuilder, Parameter, ParameterBuilder, ParameterIn, PathItem,
};
use utoipa::openapi::schema::{ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{
    ContentBuilder, KnownFormat, OpenApi, Ref, RefOr, Required, ResponseBuilder, ResponsesBuilder,
};

/// How a resource's rows are named in paths.
pub(crate) enum PathKey {
    /// `{id}`, a UUID.
    Id,
    /// `{<name>}`, text matching `pattern` when there is one.
    Text {
        /// The parameter's name.
        name: &'static str,
        /// Its pattern.
        pattern: Option<&'static str>,
    },
}

/// One standard operation.
pub(crate) enum Op {
    /// `GET <collection>` with the list's query parameters.
    List(fn() -> Vec<Parameter>),
    /// `GET <collection>/{key}`.
    Get,
    /// `DELETE <collection>/{key}`, with the conflict it may answer.
    Delete(Option<&'static str>),
}

/// A resource's standard operations, as the document shows them.
pub(crate) struct Standard {
    /// The document tag.
    pub tag: &'static str,
    /// The collection path (`/v1/workflows`).
    pub path: &'static str,
    /// The noun in summaries (`workflow`, `audit event`).
    pub noun: &'static str,
    /// The response schema of one row (`Workflow`); its list is `Page_<schema>` and the
    /// operation ids are `list<schema>s`, `get<schema>`, `delete<schema>`.
    pub schema: &'static str,
    /// How rows are named in paths.
    pub key: PathKey,
    /// The operations the resource has.
    pub ops: &'static [Op],
}

impl Standard {
    /// Adds the operations to `doc` (before the modifier adds refusals to every operation).
    pub(crate) fn add_to(&self, doc: &mut OpenApi) {
        let (name, key) = self.key_parameter();
        let one = format!("{}/{{{name}}}", self.path);
        let article = if self.noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
            "an"
        } else {
            "a"
        };
        for op in self.ops {
            let (path, method, op) = match op {
                Op::List(query) => (
                    self.path.to_owned(),
                    HttpMethod::Get,
                    self.operation("list", "s", format!("List {}s", self.noun))
                        .parameters(Some(query()))
                        .response(
                            "200",
                            ok(
                                &format!("A page of {}s", self.noun),
                                &format!("Page_{}", self.schema),
                            ),
                        ),
                ),
                Op::Get => (
                    one.clone(),
                    HttpMethod::Get,
                    self.operation("get", "", format!("Get {article} {}", self.noun))
                        .parameter(key.clone())
                        .response("200", ok(&format!("The {}", self.noun), self.schema)),
                ),
                Op::Delete(conflict) => {
                    let mut op = self
                        .operation("delete", "", format!("Delete {article} {}", self.noun))
                        .parameter(key.clone())
                        .response("204", ResponseBuilder::new().description("Deleted"));
                    if let Some(why) = conflict {
                        op = op.response("409", ResponseBuilder::new().description(*why));
                    }
                    (one.clone(), HttpMethod::Delete, op)
                }
            };
            doc.paths.add_path_operation(path, vec![method], op);
        }
        // Every other operation on one row (`PATCH`, `PUT`, `…/runs`) names it the same way.
        for (path, item) in &mut doc.paths.paths {
            if !path.starts_with(&one) {
                continue;
            }
            for op in operations(item) {
                let parameters = op.parameters.get_or_insert_with(Vec::new);
                let named = |p: &RefOr<Parameter>| matches!(p, RefOr::T(p) if p.name == name);
                if !parameters.iter().any(named) {
                    parameters.insert(0, RefOr::T(key.clone()));
                }
            }
        }
    }

    fn operation(&self, verb: &str, plural: &str, summary: String) -> OperationBuilder {
        OperationBuilder::new()
            .tag(self.tag)
            .operation_id(Some(format!("{verb}{}{plural}", self.schema)))
            .summary(Some(summary))
            .responses(ResponsesBuilder::new())
    }

    /// The path parameter naming one row.
    fn key_parameter(&self) -> (&'static str, Parameter) {
        let (name, description, schema) = match self.key {
            PathKey::Id => (
                "id",
                format!("The {}'s id", self.noun),
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid))),
            ),
            PathKey::Text { name, pattern } => (
                name,
                format!("The {}'s {name}", self.noun),
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .pattern(pattern),
            ),
        };
        let parameter = ParameterBuilder::new()
            .name(name)
            .parameter_in(ParameterIn::Path)
            .required(Required::True)
            .description(Some(description))
            .schema(Some(schema.build()))
            .build();
        (name, parameter)
    }
}

/// The operations of a path item.
pub(crate) fn operations(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.patch,
    ]
    .into_iter()
    .flatten()
}

/// A 200 answering `schema` as JSON.
fn ok(description: &str, schema: &str) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        "application/json",
        ContentBuilder::new()
            .schema(Some(Ref::from_schema_name(schema)))
            .build(),
    )
}
