import * as fs from "node:fs";
import { expect, test, type Browser, type Page } from "@playwright/test";
import * as path from "node:path";

// The live demo against the server started by playwright.config.ts, whose generator is the tiny
// checkpoint scripts/test.sh trains with `cemiface train-diffusion` (32×32 images).

const PHOTO = path.join(__dirname, "../../assets/face_recognition/obama.jpg");

type Frame = { kind: number; meta: any; image: Buffer };
// The last preview step the page had received when it sent its cancel message (CDP delivers the
// socket's received and sent frames to the test in order).
const cancelSentAfterStep: number[] = [];

// Records every binary frame the page's websocket receives, decoded like the page decodes them:
// [u32 BE kind][u32 BE meta length][meta JSON][PNG bytes].
function recordFrames(page: Page): Frame[] {
  const frames: Frame[] = [];
  page.on("websocket", (ws) => {
    ws.on("framesent", ({ payload }) => {
      if (typeof payload === "string" && JSON.parse(payload).type === "cancel") {
        cancelSentAfterStep.push(Math.max(0, ...frames.filter((f) => f.kind === 1).map((f) => f.meta.step)));
      }
    });
    ws.on("framereceived", ({ payload }) => {
      if (typeof payload === "string") return;
      const kind = payload.readUInt32BE(0);
      const len = payload.readUInt32BE(4);
      const meta = JSON.parse(payload.subarray(8, 8 + len).toString("utf8"));
      frames.push({ kind, meta, image: payload.subarray(8 + len) });
    });
  });
  return frames;
}

function watchErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  return errors;
}

async function openDemo(page: Page) {
  await expect(async () => {
    const r = await page.request.get("/healthz");
    expect(r.ok()).toBeTruthy();
  }).toPass({ timeout: 30_000 });
  await page.goto("/demo");
  await expect(page.locator('main[data-hydrated="true"]')).toBeVisible({ timeout: 15_000 });
  await expect(page.locator("#connection")).toHaveText("connected", { timeout: 10_000 });
  await expect(page.locator("#model-info")).toContainText("32×32");
}

async function uploadPhoto(page: Page) {
  await page.locator("#photo-input").setInputFiles(PHOTO);
  const crop = page.locator("#aligned-crop");
  await expect(crop).toBeVisible({ timeout: 20_000 });
  await expect.poll(() => crop.evaluate((img: HTMLImageElement) => img.naturalWidth)).toBe(112);
}

test("upload a photo, see the aligned crop, stream 5 steps and get the final image", async ({ page }) => {
  const errors = watchErrors(page);
  const frames = recordFrames(page);
  await openDemo(page);
  await uploadPhoto(page);
  await page.locator("#m-input").fill("0");
  await page.locator("#steps-input").fill("5");
  await page.locator("#seed-input").fill("1234");
  await page.locator("#start").click();

  await expect(page.locator("#progress-text")).toContainText("Done: 5 steps", { timeout: 30_000 });
  const previews = frames.filter((f) => f.kind === 1);
  expect(previews.map((f) => f.meta.step)).toEqual([1, 2, 3, 4, 5]);
  for (const f of previews) {
    expect(f.meta.m).toEqual([0]);
    expect(f.image.subarray(1, 4).toString()).toBe("PNG");
  }
  const final = frames.filter((f) => f.kind === 2);
  expect(final).toHaveLength(1);
  expect(await page.locator("#preview").getAttribute("src")).toMatch(/^blob:/);
  await expect(page.locator("#similarity")).toHaveText(
    /^m = \+0\.00: similarity [+-]\d\.\d{3}, (on target \(within ±0\.15\)|\d\.\d\d (above|below) target)$/,
  );
  await expect(page.locator("#panel-labels span")).toHaveText([/^m \+0\.00 → [+-]\d\.\d\d$/]);
  await expect(page.locator("#sim-chart polyline")).toHaveCount(1);
  await expect(page.locator("#gallery figure")).toHaveCount(1);
  await expect(page.locator("#gallery figcaption").first()).toContainText("seed 1234 · 5 steps");

  // The gallery's PNG is the final frame with its settings in a `parameters` text chunk.
  const [png] = await Promise.all([page.waitForEvent("download"), page.locator("#gallery .download").first().click()]);
  expect(png.suggestedFilename()).toMatch(/^cemiface-m\+0\.00-seed1234-5steps-\d+\.png$/);
  const bytes = fs.readFileSync((await png.path())!);
  const text = pngText(bytes);
  expect(text.parameters).toMatch(/^CemiFace: similarity target m = \+0\.00\nSteps: 5, Sampler: DDIM, Eta: 1, Seed: 1234, Size: 32x32, /);
  expect(text.parameters).toContain("Achieved similarity: ");

  // Re-running a gallery entry reproduces the image byte for byte.
  await page.locator("#gallery .rerun").first().click();
  await expect(page.locator("#gallery figure")).toHaveCount(2, { timeout: 30_000 });
  const finals = frames.filter((f) => f.kind === 2);
  expect(finals).toHaveLength(2);
  expect(finals[1].image.equals(finals[0].image)).toBeTruthy();

  // The m-sweep renders the five targets side by side.
  await page.locator("#steps-input").fill("2");
  await page.locator("#sweep").click();
  await expect(page.locator("#gallery figure")).toHaveCount(3, { timeout: 30_000 });
  const sweep = frames.filter((f) => f.kind === 2)[2];
  expect(sweep.meta.m).toEqual([-1, -0.5, 0, 0.5, 1]);
  expect([sweep.meta.width, sweep.meta.height]).toEqual([160, 32]);
  await expect(page.locator("#sim-chart polyline")).toHaveCount(5);
  await expect(page.locator("#panel-labels span")).toHaveCount(5);
  await expect(page.locator("#sim-legend .key")).toHaveText(["m = -1.00", "m = -0.50", "m = +0.00", "m = +0.50", "m = +1.00"]);
  await expect(page.locator("#panel-labels span").first()).toContainText("m -1.00 → ");

  // The gallery outlives a reload (browser storage); delete removes one, the zip holds the rest.
  await page.reload();
  await openDemo(page);
  await expect(page.locator("#gallery figure")).toHaveCount(3);
  await page.locator("#gallery .delete").first().click();
  await expect(page.locator("#gallery figure")).toHaveCount(2);
  await page.reload();
  await openDemo(page);
  await expect(page.locator("#gallery figure")).toHaveCount(2);
  const [zip] = await Promise.all([page.waitForEvent("download"), page.locator("#download-all").click()]);
  expect(zip.suggestedFilename()).toBe("cemiface-results.zip");
  const z = fs.readFileSync((await zip.path())!);
  expect(z.subarray(0, 4).toString("latin1")).toBe("PK\x03\x04");
  expect(z.readUInt16LE(z.length - 12)).toBe(2);
  page.once("dialog", (d) => d.accept());
  await page.locator("#clear-gallery").click();
  await expect(page.locator("#gallery figure")).toHaveCount(0);
  await expect(page.locator("#gallery-empty")).toBeVisible();
  expect(errors).toEqual([]);
});

/// The tEXt chunks of a PNG, keyword → text.
function pngText(png: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let at = 8;
  while (at + 8 <= png.length) {
    const len = png.readUInt32BE(at);
    const type = png.subarray(at + 4, at + 8).toString("latin1");
    if (type === "tEXt") {
      const data = png.subarray(at + 8, at + 8 + len);
      const nul = data.indexOf(0);
      out[data.subarray(0, nul).toString("latin1")] = data.subarray(nul + 1).toString("latin1");
    }
    at += 12 + len;
  }
  return out;
}

test("cancel stops a run within a step", async ({ page }) => {
  const frames = recordFrames(page);
  await openDemo(page);
  await uploadPhoto(page);
  await page.locator("#steps-input").fill("100");
  await page.locator("#start").click();
  const text = page.locator("#progress-text");
  // Steps of the tiny model take tens of milliseconds: wait for any step from 2 on.
  await expect(text).toHaveText(/Step ([2-9]|[1-9]\d) of 100/, { timeout: 30_000 });
  await page.locator("#cancel").click();
  await expect(text).toContainText("Cancelled after", { timeout: 10_000 });
  const stopped = Number((await text.textContent())!.match(/after (\d+) step/)![1]);
  expect(cancelSentAfterStep).toHaveLength(1);
  const seen = cancelSentAfterStep[0];
  expect(stopped).toBeGreaterThanOrEqual(seen);
  // At most the step running when the cancel arrives, plus one frame already on its way to the page.
  expect(stopped).toBeLessThanOrEqual(seen + 2);
  expect(frames.filter((f) => f.kind === 2)).toHaveLength(0);
  await expect(page.locator("#start")).toBeEnabled();
});

test("a file that is not an image is refused with a message", async ({ page }) => {
  await openDemo(page);
  await page.locator("#photo-input").setInputFiles({
    name: "notes.jpg",
    mimeType: "image/jpeg",
    buffer: Buffer.from("these are my notes, not a photo"),
  });
  await expect(page.locator("#upload-error")).toContainText("not an image");
  await expect(page.locator("#aligned-crop")).toHaveCount(0);
  await expect(page.locator("#start")).toBeDisabled();
  // A disabled button says why.
  await expect(page.locator("#start-reason")).toHaveText("Upload a photo first.");
});

async function visitor(browser: Browser) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const frames = recordFrames(page);
  await openDemo(page);
  await uploadPhoto(page);
  return { context, page, frames };
}

test("two visitors never see each other's previews or photos", async ({ browser }) => {
  const a = await visitor(browser);
  const b = await visitor(browser);
  for (const v of [a, b]) {
    await v.page.locator("#steps-input").fill("3");
    await v.page.locator("#start").click();
  }
  for (const v of [a, b]) {
    await expect(v.page.locator("#progress-text")).toContainText("Done", { timeout: 30_000 });
  }
  const jobs = (v: { frames: Frame[] }) => new Set(v.frames.map((f) => f.meta.job_id));
  expect(jobs(a).size).toBe(1);
  expect(jobs(b).size).toBe(1);
  expect([...jobs(a)][0]).not.toBe([...jobs(b)][0]);
  // A's aligned crop is not served to B.
  const cropA = await a.page.locator("#aligned-crop").getAttribute("src");
  expect((await a.page.request.get(cropA!)).status()).toBe(200);
  expect((await b.page.request.get(cropA!)).status()).toBe(404);
  await a.context.close();
  await b.context.close();
});

test("number fields keep what is typed and say what is wrong beside the field", async ({ page }) => {
  const errors = watchErrors(page);
  await openDemo(page);
  await expect(page).toHaveTitle("Live demo · CemiFace-rs");
  await uploadPhoto(page);
  const eta = page.locator("#eta-input");
  // Typed key by key: "0." must not become "0", so "0.5" arrives whole.
  await eta.fill("");
  await eta.pressSequentially("0.5");
  await expect(eta).toHaveValue("0.5");
  const steps = page.locator("#steps-input");
  await steps.fill("");
  await steps.pressSequentially("05");
  await expect(steps).toHaveValue("05");
  // Out of range: kept as typed, an error beside the field once it loses focus, Start disabled.
  await steps.fill("250");
  await steps.blur();
  await expect(steps).toHaveValue("250");
  await expect(page.locator("#steps-error")).toContainText("between 1 and 100");
  await expect(page.locator("#start")).toBeDisabled();
  await steps.fill("3");
  await expect(page.locator("#steps-error")).toHaveCount(0);
  await expect(page.locator("#start")).toBeEnabled();
  // Randomize still writes the seed field.
  await page.locator("#seed-input").fill("12");
  await page.locator("#randomize").click();
  await expect(page.locator("#seed-input")).not.toHaveValue("12");
  expect(errors).toEqual([]);
});
