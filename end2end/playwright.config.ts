import { defineConfig } from "@playwright/test";

// Tests drive Debian's Chromium (installed by scripts/setup.sh); Playwright never downloads a browser.
// The web server is the release binary built by `cargo leptos build --release`; under
// `cargo leptos end-to-end` the already running server is reused.
const port = Number(process.env.E2E_PORT ?? 3000);
const baseURL = `http://127.0.0.1:${port}`;

export default defineConfig({
  testDir: "./tests",
  timeout: 30_000,
  fullyParallel: false,
  workers: 1,
  retries: 0,
  reporter: [["list"]],
  use: {
    baseURL,
    browserName: "chromium",
    screenshot: "only-on-failure",
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    },
  },
  webServer: [
    {
      command: "./target/release/cemiface serve",
      cwd: "..",
      url: `${baseURL}/healthz`,
      env: {
        CEMIFACE_ADDR: `127.0.0.1:${port}`,
        LEPTOS_SITE_ROOT: "target/site",
        CEMIFACE_LOG: "warn",
        // The demo's generator: the tiny checkpoint scripts/test.sh trains (32×32), unless set.
        CEMIFACE_GENERATOR: process.env.CEMIFACE_GENERATOR ?? "target/e2e/generator",
        // A fresh job store (scripts/test.sh empties it) and the admin password hash it made.
        CEMIFACE_DATA_DIR: process.env.CEMIFACE_DATA_DIR ?? "target/e2e/data",
        CEMIFACE_ADMIN_PASSWORD_HASH: process.env.E2E_ADMIN_HASH ?? "",
      },
      reuseExistingServer: true,
      timeout: 60_000,
    },
    {
      // The shipped default generator (tests/demo-shipped.spec.ts), as `scripts/serve.sh` serves it.
      command: "./target/release/cemiface serve",
      cwd: "..",
      url: `http://127.0.0.1:${port + 1}/healthz`,
      env: {
        CEMIFACE_ADDR: `127.0.0.1:${port + 1}`,
        LEPTOS_SITE_ROOT: "target/site",
        CEMIFACE_LOG: "warn",
        CEMIFACE_GENERATOR: "models/latent-dcgan",
        CEMIFACE_DATA_DIR: "target/e2e/data-shipped",
      },
      reuseExistingServer: true,
      timeout: 60_000,
    },
  ],
});
