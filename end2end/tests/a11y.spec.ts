import AxeBuilder from "@axe-core/playwright";
import { expect, Page, test } from "@playwright/test";
import * as path from "node:path";

// Every page at phone size (390×844) and at 1280×800, in the light and the dark theme: nothing
// scrolls sideways, and axe-core finds no serious or critical accessibility violation.

const PASSWORD = process.env.E2E_ADMIN_PASSWORD ?? "e2e-admin-password";

async function hydrated(page: Page) {
  await expect(page.locator('main[data-hydrated="true"]')).toBeVisible({ timeout: 15_000 });
}

async function login(page: Page) {
  await page.goto("/admin");
  await hydrated(page);
  // The page first checks the session: wait for the login form or the dashboard.
  await expect(page.locator("#admin-password, #jobs").first()).toBeVisible({ timeout: 10_000 });
  if (await page.locator("#admin-password").isVisible()) {
    await page.locator("#admin-password").fill(PASSWORD);
    await page.locator("#login-button").click();
  }
  await expect(page.locator("#jobs")).toBeVisible();
}

/// The pages a visitor and an admin see; the job page needs one finished job.
async function pages(page: Page): Promise<string[]> {
  await login(page);
  const { csrf } = await (await page.request.get("/api/admin/session")).json();
  const r = await page.request.post("/api/admin/jobs", {
    headers: { "x-csrf-token": csrf },
    data: { kind: "generate", identities: 1, images_per_identity: 1, steps: 2, m: [0] },
  });
  expect(r.ok(), await r.text()).toBeTruthy();
  const id = (await r.json()).id;
  return ["/", "/demo", "/status", "/admin", `/admin/jobs/${id}`];
}

const PHOTO = path.join(__dirname, "../../assets/face_recognition/obama.jpg");

async function check(page: Page, url: string, label: string) {
  await page.goto(url);
  await hydrated(page);
  await page.waitForLoadState("networkidle");
  await checkHere(page, `${label} ${url}`);
}

async function checkHere(page: Page, where: string) {
  const { scroll, inner } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth,
    inner: window.innerWidth,
  }));
  expect.soft(scroll, `${where}: content ${scroll} px wide in a ${inner} px window`).toBeLessThanOrEqual(inner);
  const axe = await new AxeBuilder({ page }).analyze();
  const bad = axe.violations
    .filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(" ") + (process.env.AXE_DEBUG ? " " + n.failureSummary : "")).slice(0, 3).join(", ")}`);
  expect.soft(bad, where).toEqual([]);
}

for (const scheme of ["light", "dark"] as const) {
  test(`every page fits a phone and passes axe (${scheme})`, async ({ page }) => {
    test.setTimeout(90_000);
    await page.emulateMedia({ colorScheme: scheme });
    const paths = await pages(page);
    for (const [w, h] of [
      [390, 844],
      [1280, 800],
    ]) {
      await page.setViewportSize({ width: w, height: h });
      for (const url of paths) {
        await check(page, url, `${scheme} ${w}×${h}`);
      }
    }
    // The demo with a result on screen and one in the gallery.
    await page.goto("/demo");
    await hydrated(page);
    await expect(page.locator("#connection")).toHaveText("connected", { timeout: 10_000 });
    await page.locator("#photo-input").setInputFiles(PHOTO);
    await expect(page.locator("#aligned-crop")).toBeVisible({ timeout: 20_000 });
    await page.locator("#steps-input").fill("2");
    await page.locator("#sweep").click();
    await expect(page.locator("#progress-text")).toContainText("Done", { timeout: 30_000 });
    for (const [w, h] of [
      [390, 844],
      [1280, 800],
    ]) {
      await page.setViewportSize({ width: w, height: h });
      await checkHere(page, `${scheme} ${w}×${h} /demo with a result`);
      // Chart text as drawn on screen (font size × the SVG's scale) stays readable.
      const px = await page.locator("#sim-chart .tick").first().evaluate((t: SVGTextElement) =>
        parseFloat(getComputedStyle(t).fontSize) * (t.getScreenCTM()?.a ?? 1),
      );
      expect.soft(px, `${scheme} ${w}×${h}: chart text ${px.toFixed(1)} px`).toBeGreaterThanOrEqual(12);
    }
  });
}
