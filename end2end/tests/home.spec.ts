import { expect, test, type Page } from "@playwright/test";

// Collects page errors and console errors; every test ends by asserting there were none.
function watchErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(`console: ${m.text()}`);
  });
  return errors;
}

async function openHydrated(page: Page, path: string) {
  // Poll first: under `cargo leptos end-to-end` the server may still be starting.
  await expect(async () => {
    const r = await page.request.get("/healthz");
    expect(r.ok()).toBeTruthy();
  }).toPass({ timeout: 30_000 });
  await page.goto(path);
  await expect(page.locator('main[data-hydrated="true"]')).toBeVisible({ timeout: 15_000 });
}

test("home page hydrates and the m slider explains each regime", async ({ page }) => {
  const errors = watchErrors(page);
  await openHydrated(page, "/");
  await expect(page.locator("h1")).toContainText("controlled difficulty");

  const regime = page.locator("#m-regime");
  await expect(regime).toContainText("semi-hard");
  await expect(page.locator("#m-value")).toHaveText("+0.00");

  const slider = page.locator("#m-slider");
  await slider.fill("0.85");
  await expect(page.locator("#m-value")).toHaveText("+0.85");
  await expect(regime).toContainText("easy");
  await expect(regime).toHaveClass(/regime easy/);

  await slider.fill("-0.7");
  await expect(page.locator("#m-value")).toHaveText("-0.70");
  await expect(regime).toContainText("hard");

  await page.screenshot({ path: "test-results/home.png", fullPage: true });
  expect(errors).toEqual([]);
});

test("status page lists the assets and re-checks them on request", async ({ page }) => {
  const errors = watchErrors(page);
  await openHydrated(page, "/");
  await page.locator("header nav").getByRole("link", { name: "System status" }).click();
  await expect(page).toHaveURL(/\/status$/);
  // Each page names itself in the title (a client-side navigation updates it).
  await expect(page).toHaveTitle("System status · CemiFace-rs");

  const table = page.locator("#assets");
  await expect(table).toContainText("dlib-resnet");
  await expect(table).toContainText("dcgan-faces");
  await expect(page.locator("#device")).toHaveText(/^(cpu|cuda:\d+)$/);
  // The status page names the demo's generator and says whether admin is on.
  // (admin.spec may have switched the demo to a job's checkpoint: either way one is named.)
  await expect(page.locator("#generator")).toContainText(/(target\/e2e\/generator|checkpoints).*training steps/);
  await expect(page.locator("#admin-state")).toHaveText("enabled");

  const health = await (await page.request.get("/healthz")).json();
  await expect(page.locator("#version")).toHaveText(health.version);
  for (const [name, group] of Object.entries<{ present: boolean }>(health.assets)) {
    const row = table.locator("tr", { hasText: name });
    await expect(row.locator("td.state")).toHaveText(group.present ? "installed" : "not installed");
  }

  await page.locator("#recheck").click();
  await expect(page.locator("#check-count")).toHaveText("re-checked 1×");
  await expect(table).toContainText("dlib-resnet");

  await page.screenshot({ path: "test-results/status.png", fullPage: true });
  expect(errors).toEqual([]);
});
