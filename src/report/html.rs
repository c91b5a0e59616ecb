//! The self-contained HTML report (`templates/report/report.html`): no
//! network, no scripts, no external fonts (a Content-Security-Policy says
//! so to the browser too), screenshots inline. askama escapes every value.

use askama::Template;

use super::view::Overview;

#[derive(Template)]
#[template(path = "report/report.html")]
struct Page<'a> {
    version: &'static str,
    o: &'a Overview,
}

pub fn render(o: &Overview) -> Result<String, askama::Error> {
    Page { version: env!("CARGO_PKG_VERSION"), o }.render()
}
