//! The interactive docs page, served entirely from this binary.
//!
//! The Swagger UI assets come from the `swagger-ui-dist` crate, which carries them inside the
//! crate: no CDN link, nothing downloaded at build time, so the page works on a machine
//! without internet, which is where many proxies run.

use axum::Router;
use axum::response::Html;

/// Where the assets are mounted (relative to the root path).
pub const ASSETS: &str = "/_assets/swagger-ui";

/// Routes that serve the Swagger UI files.
pub fn asset_routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    swagger_ui_dist::generate_routes(swagger_ui_dist::ApiDefinition {
        uri_prefix: ASSETS,
        api_definition: swagger_ui_dist::OpenApiSource::Uri("/openapi.json"),
        title: Some("MCP OpenAPI Proxy"),
    })
    .with_state(())
}

/// A docs page for the OpenAPI document at `openapi_url`; `root_path` is the prefix under which
/// the client reaches the proxy.
pub fn page(title: &str, openapi_url: &str, root_path: &str) -> Html<String> {
    let title = html_escape(title);
    let openapi_url = js_string(openapi_url);
    Html(format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} - Swagger UI</title>
<link rel="stylesheet" href="{root_path}{ASSETS}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{root_path}{ASSETS}/swagger-ui-bundle.js"></script>
<script>
window.ui = SwaggerUIBundle({{
  url: {openapi_url},
  dom_id: '#swagger-ui',
  deepLinking: true,
  // The default validator badge calls an online service; the page must work offline.
  validatorUrl: null,
  persistAuthorization: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: 'BaseLayout'
}});
</script>
</body>
</html>
"#
    ))
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A JavaScript string literal that cannot close the script element.
fn js_string(s: &str) -> String {
    serde_json::to_string(s)
        .unwrap_or_else(|_| "\"\"".into())
        .replace("</", "<\\/")
}
