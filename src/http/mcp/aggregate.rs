//! Resources, prompts and completion of every server behind one MCP endpoint.
//!
//! Each is asked of the servers that announced it at `initialize` and are up, all at once,
//! through [`Upstream::request`] (the server's deadline, a replay on another session when one
//! ends under the request). A server that is down, or fails its part, is left out of a
//! listing rather than failing it for the others, as with tools.
//!
//! - **Prompts** are named like tools: `{server}{separator}{prompt}` on `/mcp`, fitted to
//!   the same pattern; `prompts/get` maps the name back.
//! - **Resources** keep their URIs (clients store them, and a URI names its own scheme);
//!   `resources/read` goes to the server that listed the URI, else to the one with a template
//!   the URI fits, else to each server in turn until one has it. Two servers listing the same
//!   URI both appear; a read goes to the first.
//! - **Completion** goes to the server of the prompt or resource template it refers to.
//!
//! Listings are gathered fresh on each request, so that any replica can answer any request
//! and nothing goes stale when a server changes.

use std::sync::Arc;

use futures::future::join_all;
use rmcp::ErrorData;
use rmcp::model::{
    ClientRequest, CompleteRequestParams, CompleteResult, GetPromptRequestParams, GetPromptResult,
    ListPromptsResult, ListResourceTemplatesResult, ListResourcesResult, ReadResourceRequestParams,
    ReadResourceResult, Reference, ServerCapabilities,
};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::{McpFront, endpoint_name, error_of};
use crate::upstream::{Failure, Status, Upstream};

/// Pages followed per server and listing; a server that keeps handing out cursors is cut off.
const MAX_PAGES: usize = 16;

/// What a server announced it can do.
#[derive(Clone, Copy)]
enum Offer {
    Resources,
    Prompts,
    Completions,
}

impl Offer {
    fn in_(self, c: &ServerCapabilities) -> bool {
        match self {
            Offer::Resources => c.resources.is_some(),
            Offer::Prompts => c.prompts.is_some(),
            Offer::Completions => c.completions.is_some(),
        }
    }
}

/// Sends `method` with `params` to `upstream` and reads the answer as `T`. Both sides go
/// through JSON: rmcp's result type is an untagged union, which could read one result as
/// another of the same shape.
async fn ask<T: DeserializeOwned>(
    upstream: &Upstream,
    method: &str,
    params: Value,
) -> Result<T, Failure> {
    let request: ClientRequest =
        serde_json::from_value(json!({"method": method, "params": params})).map_err(|e| {
            Failure::Protocol {
                detail: format!("cannot make {method}: {e}"),
            }
        })?;
    let result = upstream.request(request).await?;
    serde_json::to_value(result)
        .and_then(serde_json::from_value)
        .map_err(|e| Failure::Protocol {
            detail: format!("the server's answer to {method}: {e}"),
        })
}

/// Every page of a listing: `items` takes a page's items and its next cursor.
async fn list_all<T: DeserializeOwned, I>(
    upstream: &Upstream,
    method: &str,
    items: impl Fn(T) -> (Vec<I>, Option<String>),
) -> Result<Vec<I>, Failure> {
    let mut all = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let params = match cursor.take() {
            Some(c) => json!({ "cursor": c }),
            None => json!({}),
        };
        let (page, next) = items(ask::<T>(upstream, method, params).await?);
        all.extend(page);
        match next {
            Some(next) => cursor = Some(next),
            None => return Ok(all),
        }
    }
    tracing::warn!(
        server = upstream.name(),
        method,
        pages = MAX_PAGES,
        "a listing kept paginating; cut off"
    );
    Ok(all)
}

/// The literal start of a URI template, before its first expression: what a URI made from
/// it must begin with.
fn template_prefix(template: &str) -> &str {
    template.split('{').next().unwrap_or(template)
}

impl McpFront {
    /// The servers that are up and announced `offer`.
    fn offering(&self, offer: Offer) -> Vec<Arc<Upstream>> {
        self.upstreams()
            .into_iter()
            .filter(|u| !matches!(u.view().status, Status::Down | Status::Stopped))
            .filter(|u| u.capabilities().is_some_and(|c| offer.in_(&c)))
            .collect()
    }

    /// A listing of every offering server, gathered at once; a server whose part fails is
    /// left out (and logged).
    async fn gather<T: DeserializeOwned, I>(
        &self,
        offer: Offer,
        method: &str,
        items: impl Fn(T) -> (Vec<I>, Option<String>) + Copy,
    ) -> Vec<(Arc<Upstream>, Vec<I>)> {
        let ups = self.offering(offer);
        let parts = join_all(ups.iter().map(|u| list_all(u, method, items))).await;
        ups.into_iter()
            .zip(parts)
            .filter_map(|(u, part)| match part {
                Ok(items) => Some((u, items)),
                Err(e) => {
                    tracing::debug!(server = u.name(), method, error = %e.describe(), "left out of the endpoint's listing");
                    None
                }
            })
            .collect()
    }

    fn prompt_name(&self, upstream: &Upstream, prompt: &str) -> String {
        let server = self.scope.is_none().then(|| upstream.name());
        endpoint_name(server, prompt, &self.state.config.mcp_separator)
    }

    async fn prompts(&self) -> Vec<(Arc<Upstream>, Vec<Value>)> {
        self.gather(Offer::Prompts, "prompts/list", |p: ListPromptsResult| {
            let prompts = p
                .prompts
                .into_iter()
                .filter_map(|p| serde_json::to_value(p).ok())
                .collect();
            (prompts, p.next_cursor)
        })
        .await
    }

    /// The server and the server's own name of an endpoint prompt name.
    async fn resolve_prompt(&self, name: &str) -> Option<(Arc<Upstream>, String)> {
        self.prompts().await.into_iter().find_map(|(u, prompts)| {
            prompts.iter().find_map(|p| {
                let own = p["name"].as_str()?;
                (self.prompt_name(&u, own) == name).then(|| (u.clone(), own.to_string()))
            })
        })
    }

    pub(super) async fn list_prompts_of_all(&self) -> Result<ListPromptsResult, ErrorData> {
        let mut listed = Vec::new();
        for (u, prompts) in self.prompts().await {
            for mut p in prompts {
                if let Some(own) = p["name"].as_str() {
                    p["name"] = json!(self.prompt_name(&u, own));
                }
                listed.push(p);
            }
        }
        serde_json::from_value(json!({ "prompts": listed }))
            .map_err(|e| ErrorData::internal_error(format!("prompt list: {e}"), None))
    }

    pub(super) async fn get_prompt_of(
        &self,
        request: GetPromptRequestParams,
    ) -> Result<GetPromptResult, ErrorData> {
        let Some((upstream, own)) = self.resolve_prompt(&request.name).await else {
            return Err(ErrorData::invalid_params(
                format!("no prompt named '{}'", request.name),
                None,
            ));
        };
        let mut params = serde_json::to_value(&request)
            .map_err(|e| ErrorData::internal_error(format!("prompts/get: {e}"), None))?;
        params["name"] = json!(own);
        ask(&upstream, "prompts/get", params)
            .await
            .map_err(|f| error_of(f, upstream.name(), &own))
    }

    pub(super) async fn list_resources_of_all(&self) -> Result<ListResourcesResult, ErrorData> {
        let listed: Vec<Value> = self
            .resources()
            .await
            .into_iter()
            .flat_map(|(_, r)| r)
            .collect();
        serde_json::from_value(json!({ "resources": listed }))
            .map_err(|e| ErrorData::internal_error(format!("resource list: {e}"), None))
    }

    pub(super) async fn list_templates_of_all(
        &self,
    ) -> Result<ListResourceTemplatesResult, ErrorData> {
        let listed: Vec<Value> = self
            .templates()
            .await
            .into_iter()
            .flat_map(|(_, t)| t)
            .collect();
        serde_json::from_value(json!({ "resourceTemplates": listed }))
            .map_err(|e| ErrorData::internal_error(format!("resource template list: {e}"), None))
    }

    async fn resources(&self) -> Vec<(Arc<Upstream>, Vec<Value>)> {
        self.gather(
            Offer::Resources,
            "resources/list",
            |p: ListResourcesResult| {
                let items = p
                    .resources
                    .into_iter()
                    .filter_map(|r| serde_json::to_value(r).ok())
                    .collect();
                (items, p.next_cursor)
            },
        )
        .await
    }

    async fn templates(&self) -> Vec<(Arc<Upstream>, Vec<Value>)> {
        self.gather(
            Offer::Resources,
            "resources/templates/list",
            |p: ListResourceTemplatesResult| {
                let items = p
                    .resource_templates
                    .into_iter()
                    .filter_map(|t| serde_json::to_value(t).ok())
                    .collect();
                (items, p.next_cursor)
            },
        )
        .await
    }

    /// The servers to ask for `uri`, best first: the one that listed it, then those with a
    /// template it fits (longest literal start first), then every other resource server.
    async fn route_uri(&self, uri: &str) -> Vec<Arc<Upstream>> {
        let mut order: Vec<Arc<Upstream>> = Vec::new();
        let mut add = |u: &Arc<Upstream>| {
            if !order.iter().any(|o| Arc::ptr_eq(o, u)) {
                order.push(u.clone());
            }
        };
        let (listed, templates) = tokio::join!(self.resources(), self.templates());
        for (u, resources) in &listed {
            if resources.iter().any(|r| r["uri"] == uri) {
                add(u);
            }
        }
        let mut fits: Vec<(usize, &Arc<Upstream>)> = templates
            .iter()
            .flat_map(|(u, ts)| {
                ts.iter().filter_map(move |t| {
                    let prefix = template_prefix(t["uriTemplate"].as_str()?);
                    (!prefix.is_empty() && uri.starts_with(prefix)).then_some((prefix.len(), u))
                })
            })
            .collect();
        fits.sort_by_key(|(len, _)| std::cmp::Reverse(*len));
        for (_, u) in fits {
            add(u);
        }
        for u in self.offering(Offer::Resources) {
            add(&u);
        }
        order
    }

    pub(super) async fn read_resource_of(
        &self,
        request: ReadResourceRequestParams,
    ) -> Result<ReadResourceResult, ErrorData> {
        let params = serde_json::to_value(&request)
            .map_err(|e| ErrorData::internal_error(format!("resources/read: {e}"), None))?;
        let mut last: Option<ErrorData> = None;
        for upstream in self.route_uri(&request.uri).await {
            match ask(&upstream, "resources/read", params.clone()).await {
                Ok(result) => return Ok(result),
                // Another server may have it: a template's match is a guess.
                Err(f) => last = Some(error_of(f, upstream.name(), &request.uri)),
            }
        }
        Err(last.unwrap_or_else(|| {
            ErrorData::resource_not_found(
                format!("no server has the resource '{}'", request.uri),
                None,
            )
        }))
    }

    pub(super) async fn complete_of(
        &self,
        request: CompleteRequestParams,
    ) -> Result<CompleteResult, ErrorData> {
        let mut params = serde_json::to_value(&request)
            .map_err(|e| ErrorData::internal_error(format!("completion/complete: {e}"), None))?;
        let upstream = match &request.r#ref {
            Reference::Prompt(prompt) => {
                let Some((upstream, own)) = self.resolve_prompt(&prompt.name).await else {
                    return Err(ErrorData::invalid_params(
                        format!("no prompt named '{}'", prompt.name),
                        None,
                    ));
                };
                params["ref"]["name"] = json!(own);
                upstream
            }
            Reference::Resource(template) => {
                let templates = self.templates().await;
                let Some(upstream) = templates.into_iter().find_map(|(u, ts)| {
                    ts.iter()
                        .any(|t| t["uriTemplate"] == template.uri.as_str())
                        .then_some(u)
                }) else {
                    return Err(ErrorData::invalid_params(
                        format!("no resource template '{}'", template.uri),
                        None,
                    ));
                };
                upstream
            }
            _ => {
                return Err(ErrorData::invalid_params(
                    "completion for this kind of reference is not supported",
                    None,
                ));
            }
        };
        if !upstream
            .capabilities()
            .is_some_and(|c| Offer::Completions.in_(&c))
        {
            // The server offers no completion: none, as the spec's default.
            return Ok(CompleteResult::default());
        }
        ask(&upstream, "completion/complete", params)
            .await
            .map_err(|f| error_of(f, upstream.name(), "completion/complete"))
    }
}

#[cfg(test)]
mod tests {
    use super::template_prefix;

    #[test]
    fn a_templates_literal_start_is_what_its_uris_begin_with() {
        assert_eq!(
            template_prefix("test://static/resource/{id}"),
            "test://static/resource/"
        );
        assert_eq!(template_prefix("file:///{path}"), "file:///");
        assert_eq!(
            template_prefix("plain://no/expression"),
            "plain://no/expression"
        );
        assert_eq!(template_prefix("{scheme}://x"), "");
    }
}
