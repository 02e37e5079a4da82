//! CemiFace-rs pages and components (Leptos). Rendered on the server (`ssr`) and hydrated in the
//! browser (`hydrate`, the wasm entry point below). No model code lives here: pages talk to the
//! backend through server functions and, later, websockets.

#![recursion_limit = "256"]

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{Route, Router, Routes, A};
use leptos_router::{ParamSegment, StaticSegment};

pub mod admin_client;
pub mod admin_protocol;
pub mod components;
pub mod demo_client;
pub mod demo_protocol;
pub mod gallery;
pub mod pages;
pub mod regime;
pub mod status;
pub mod units;
pub mod zip_store;

use pages::{admin::AdminPage, admin_job::AdminJobPage, demo::DemoPage, home::HomePage, status::StatusPage};

/// The HTML document the server renders around the app.
pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8"/>
                <meta name="viewport" content="width=device-width, initial-scale=1"/>
                <AutoReload options=options.clone()/>
                <HydrationScripts options/>
                <MetaTags/>
            </head>
            <body>
                <App/>
            </body>
        </html>
    }
}

/// The application: navigation and routes. Only pages that do something are linked.
#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // Flips to true once the wasm has hydrated the page (effects run only in the browser); the
    // end-to-end tests wait for `data-hydrated="true"` before they interact.
    let (hydrated, set_hydrated) = signal(false);
    Effect::new(move |_| set_hydrated.set(true));

    view! {
        <Stylesheet id="leptos" href="/pkg/cemiface.css"/>
        // Each page names itself (`<Title text=…/>`); the site name follows.
        <Title formatter=|page: String| if page.is_empty() { "CemiFace-rs".to_owned() } else { format!("{page} · CemiFace-rs") }/>
        <Router>
            <a class="skip-link" href="#main">"Skip to content"</a>
            <header class="topbar">
                <A href="/" attr:class="brand">"CemiFace-rs"</A>
                <nav>
                    <A href="/">"Overview"</A>
                    <A href="/demo">"Live demo"</A>
                    <A href="/status">"System status"</A>
                    <A href="/admin">"Admin"</A>
                </nav>
            </header>
            <main id="main" tabindex="-1" data-hydrated=move || hydrated.get().to_string()>
                <Routes fallback=|| view! { <p class="notice">"No such page."</p> }>
                    <Route path=StaticSegment("") view=HomePage/>
                    <Route path=StaticSegment("demo") view=DemoPage/>
                    <Route path=StaticSegment("status") view=StatusPage/>
                    <Route path=StaticSegment("admin") view=AdminPage/>
                    <Route path=(StaticSegment("admin"), StaticSegment("jobs"), ParamSegment("id")) view=AdminJobPage/>
                </Routes>
            </main>
        </Router>
    }
}

/// Browser entry point, called by the generated JS once the wasm is loaded.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(App);
}
