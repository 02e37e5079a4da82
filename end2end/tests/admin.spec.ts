import { expect, test } from "@playwright/test";
import * as fs from "node:fs";

// The admin panel against the server started by playwright.config.ts: its password hash comes
// from E2E_ADMIN_HASH (scripts/test.sh makes it with `cemiface hash-password`), its generator is
// the tiny checkpoint scripts/test.sh trains, its data folder a fresh target/e2e/data.

const PASSWORD = process.env.E2E_ADMIN_PASSWORD ?? "e2e-admin-password";

test("log in, launch a tiny generation, watch it reach 100%, open the sample grid, download the archive", async ({ page }) => {
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto("/admin");
  await expect(page.locator('main[data-hydrated="true"]')).toBeVisible({ timeout: 15_000 });

  // A wrong password is refused with the server's message; the right one opens the dashboard.
  await page.locator("#admin-password").fill("not-the-password");
  await page.locator("#login-button").click();
  await expect(page.getByRole("alert")).toContainText("wrong password");
  await page.locator("#admin-password").fill(PASSWORD);
  await page.locator("#login-button").click();
  // Jobs come first; the launch form opens from its panel.
  await expect(page.locator("#launch")).toBeHidden();
  await page.locator("#launch-panel summary").click();
  await expect(page.locator("#launch")).toBeVisible();
  await expect(page.locator("#system")).toContainText("cpu");

  // An invalid field comes back next to the field; nothing is queued.
  await page.locator("#field-identities").fill("0");
  await page.locator("#launch-button").click();
  await expect(page.locator("#launch")).toContainText("must be between 1 and 100000");

  await page.locator("#field-identities").fill("2");
  await page.locator("#field-images_per_identity").fill("3");
  await page.locator("#field-steps").fill("3");
  await page.locator("#field-m").fill("0, 0.5");
  // Before Launch the form says what the job will write: 2 × 3 generated + 2 × 5 inquiry copies.
  await expect(page.locator("#launch-count")).toContainText("= 16 image files");
  await expect(page.locator("#launch-count")).toContainText("each identity gets 2 at m = 0, 1 at m = 0.5");
  const planned = Number(await page.locator("#launch-count").getAttribute("data-files"));
  await page.locator("#launch-button").click();
  await expect(page.locator("#launch-note")).toContainText("Queued job #");
  const id = (await page.locator("#launch-note").innerText()).match(/#(\d+)/)![1];

  const row = page.locator(`tr[data-job-id="${id}"]`);
  await expect(row.locator("td.state")).toHaveText("succeeded", { timeout: 120_000 });
  await expect(row.getByRole("progressbar")).toHaveAttribute("aria-valuenow", "100");
  await expect(row.locator(".progress-text")).toContainText("100% (6 / 6 img)");

  // The job page: its sample grid opens as an image; the archive downloads as a tar.
  await row.getByRole("link", { name: `#${id}` }).click();
  await expect(page.locator("#job-state")).toHaveText("succeeded");
  const grid = page.locator("#sample-grids img").first();
  await expect(grid).toBeVisible();
  await expect.poll(() => grid.evaluate((img: HTMLImageElement) => img.naturalWidth)).toBeGreaterThan(0);
  const [popup] = await Promise.all([page.waitForEvent("popup"), page.locator("#sample-grids a").first().click()]);
  await popup.waitForLoadState();
  expect(popup.url()).toContain(`/api/admin/jobs/${id}/files/dataset/sample_grid.png`);
  await popup.close();

  const [download] = await Promise.all([page.waitForEvent("download"), page.locator("#download").click()]);
  expect(download.suggestedFilename()).toBe(`cemiface-job-${id}.tar`);
  const file = await download.path();
  const tar = fs.readFileSync(file!);
  expect(tar.length % 512).toBe(0);
  // The first member's name (ustar header) sits in the archive's first 100 bytes.
  expect(tar.subarray(0, 100).toString("utf8")).toContain(`cemiface-job-${id}/`);
  expect(tar.includes(Buffer.from("manifest.jsonl"))).toBeTruthy();
  // The count said before Launch is the number of image files the job wrote.
  const images = tarNames(tar).filter((n) => /\/images\/.*\.(png|jpg)$/.test(n));
  expect(images.length).toBe(planned);
  // The finished job shows when it was created and how long it ran.
  await page.goto("/admin");
  await expect(page.locator(`tr[data-job-id="${id}"] td.when`)).toContainText(/ran \d/);
  await page.locator("#launch-panel summary").click();
  await page.setViewportSize({ width: 1280, height: 900 });
  await page.screenshot({ path: `${__dirname}/../../target/e2e/screenshots/admin-dashboard.png`, fullPage: true });
  expect(errors).toEqual([]);
});

test("admin pages and APIs need a session", async ({ page }) => {
  const r = await page.request.get("/api/admin/jobs");
  expect(r.status()).toBe(401);
  expect((await r.json()).error.code).toBe("unauthorized");
  await page.goto("/admin/jobs/1");
  await expect(page.locator('main[data-hydrated="true"]')).toBeVisible({ timeout: 15_000 });
  await expect(page.getByRole("alert")).toContainText("log in");
});

test("cancel asks first: dismissed, the job runs on; confirmed, it stops", async ({ page }) => {
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto("/admin");
  await expect(page.locator('main[data-hydrated="true"]')).toBeVisible({ timeout: 15_000 });
  await page.locator("#admin-password").fill(PASSWORD);
  await page.locator("#login-button").click();
  await page.locator("#launch-panel summary").click();
  await expect(page.locator("#launch")).toBeVisible();
  // A generation long enough to be running while we click.
  await page.locator("#field-identities").fill("2");
  await page.locator("#field-images_per_identity").fill("400");
  await page.locator("#field-steps").fill("50");
  await page.locator("#launch-button").click();
  await expect(page.locator("#launch-note")).toContainText("Queued job #");
  const id = (await page.locator("#launch-note").innerText()).match(/#(\d+)/)![1];
  const row = page.locator(`tr[data-job-id="${id}"]`);
  await expect(row.locator("td.state")).toHaveText("running", { timeout: 60_000 });

  const asked: string[] = [];
  page.once("dialog", (d) => { asked.push(d.message()); void d.dismiss(); });
  await row.getByRole("button", { name: "Cancel" }).click();
  await expect.poll(() => asked.length).toBe(1);
  expect(asked[0]).toContain(`Cancel job #${id}?`);
  await page.waitForTimeout(1_000);
  await expect(row.locator("td.state")).toHaveText("running");

  page.once("dialog", (d) => void d.accept());
  await row.getByRole("button", { name: "Cancel" }).click();
  await expect(row.locator("td.state")).toHaveText("cancelled", { timeout: 30_000 });
  expect(errors).toEqual([]);
});

/// Member names of a ustar archive.
function tarNames(tar: Buffer): string[] {
  const names: string[] = [];
  let at = 0;
  while (at + 512 <= tar.length && tar[at] !== 0) {
    const field = (o: number, n: number) => tar.subarray(at + o, at + o + n).toString("utf8").replace(/\0.*$/s, "");
    const prefix = field(345, 155);
    names.push(prefix ? `${prefix}/${field(0, 100)}` : field(0, 100));
    const size = parseInt(field(124, 12).trim() || "0", 8);
    at += 512 + Math.ceil(size / 512) * 512;
  }
  return names;
}

test("a training job's page labels its sample grid and offers its checkpoints for download", async ({ page }) => {
  test.setTimeout(120_000);
  await page.goto("/admin");
  await expect(page.locator('main[data-hydrated="true"]')).toBeVisible({ timeout: 15_000 });
  await page.locator("#admin-password").fill(PASSWORD);
  await page.locator("#login-button").click();
  await expect(page.locator("#jobs")).toBeVisible();
  const { csrf } = await (await page.request.get("/api/admin/session")).json();
  const r = await page.request.post("/api/admin/jobs", {
    headers: { "x-csrf-token": csrf },
    data: { kind: "train-diffusion", config: "tiny-32", steps: 2, checkpoint_every: 2, sample_grid: true },
  });
  expect(r.status()).toBe(201);
  const id = (await r.json()).id;
  await page.goto(`/admin/jobs/${id}`);
  await expect(page.locator("#job-state")).toHaveText("succeeded", { timeout: 100_000 });
  // The newest grid large, its columns named: the inquiry, then each m.
  await expect(page.locator("#grid-large .grid-columns span")).toHaveText(["inquiry", "m = -1", "m = +0", "m = +1"]);
  await expect(page.locator("#grid-large img")).toHaveAttribute("alt", /rows are held-out identities/);
  // The checkpoint (a folder) downloads as a tar.
  const link = page.locator("#artifacts a", { hasText: "(.tar)" }).first();
  await expect(link).toHaveAttribute("href", `/api/admin/jobs/${id}/checkpoints/2`);
  const tar = await page.request.get(`/api/admin/jobs/${id}/checkpoints/2`);
  expect(tar.status()).toBe(200);
  expect((await tar.body()).includes(Buffer.from("state.json"))).toBeTruthy();

  // "Use as demo generator": the demo serves this checkpoint at once, no restart.
  page.once("dialog", (d) => d.accept());
  await page.locator("#use-as-demo").click();
  await expect(page.locator("#job-note")).toContainText("The demo now uses this job's checkpoint at step 2");
  const health = await (await page.request.get("/healthz")).json();
  expect(health.generator).toContain(`jobs/${id}/`);
  await page.goto("/demo");
  await expect(page.locator("#model-info")).toContainText("2 training steps");
});

test("a running job's progress updates from the event socket while polling is blocked", async ({ page }) => {
  test.setTimeout(120_000);
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto("/admin");
  await expect(page.locator('main[data-hydrated="true"]')).toBeVisible({ timeout: 15_000 });
  await page.locator("#admin-password").fill(PASSWORD);
  await page.locator("#login-button").click();
  await expect(page.locator("#live")).toHaveText("live updates", { timeout: 15_000 });
  // A generation long enough to watch (the page's own requests are what gets blocked below; this
  // API call is not the page's).
  const { csrf } = await (await page.request.get("/api/admin/session")).json();
  const r = await page.request.post("/api/admin/jobs", {
    headers: { "x-csrf-token": csrf },
    data: { kind: "generate", identities: 2, images_per_identity: 400, steps: 50, m: [0] },
  });
  expect(r.status()).toBe(201);
  const id = (await r.json()).id;
  const row = page.locator(`tr[data-job-id="${id}"]`);
  await expect(row.locator("td.state")).toHaveText("running", { timeout: 60_000 });
  await expect(row.locator(".progress-text")).toContainText(/\(\d+ \/ 800 img\)/, { timeout: 60_000 });

  // From here on every poll of the job list and the system panel fails.
  let polls = 0;
  await page.route(/\/api\/admin\/(jobs|system)(\?.*)?$/, (route) => { polls += 1; return route.abort(); });
  const done = async () => Number((await row.locator(".progress-text").innerText()).match(/\((\d+) \//)![1]);
  const before = await done();
  await expect.poll(done, { timeout: 60_000 }).toBeGreaterThan(before);
  const later = await done();
  await expect.poll(done, { timeout: 60_000 }).toBeGreaterThan(later);
  // With the socket up the page polls rarely (every 15 s for the memory figures), not every second.
  expect(polls).toBeLessThanOrEqual(8);
  await expect(row.locator("td.state")).toHaveText("running");

  await page.unroute(/\/api\/admin\/(jobs|system)(\?.*)?$/);
  const c = await page.request.post(`/api/admin/jobs/${id}/cancel`, { headers: { "x-csrf-token": csrf } });
  expect(c.ok()).toBeTruthy();
  await expect(row.locator("td.state")).toHaveText("cancelled", { timeout: 30_000 });
  expect(errors).toEqual([]);
});
