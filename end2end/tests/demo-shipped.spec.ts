import { expect, test } from "@playwright/test";
import * as path from "node:path";

// The live demo with the generator the project ships (models/latent-dcgan), served by the second
// web server of playwright.config.ts: a public-domain photo is uploaded, inverted once into the
// DCGAN's latent space, and a full 20-step DDIM run streams every step's decoded x̂0.

const PHOTO = path.join(__dirname, "../../assets/face_recognition/obama.jpg");
const port = Number(process.env.E2E_PORT ?? 3000) + 1;
// Screenshots for docs/screenshots (scripts/screenshots.sh copies them there).
const SHOTS = path.join(__dirname, "../../target/e2e/screenshots");

test.use({ baseURL: `http://127.0.0.1:${port}` });

test("the shipped generator streams a full 20-step run for an uploaded photo", async ({ page }) => {
  test.setTimeout(240_000);
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  const frames: { kind: number; meta: any; image: Buffer }[] = [];
  page.on("websocket", (ws) =>
    ws.on("framereceived", ({ payload }) => {
      if (typeof payload === "string") return;
      const len = payload.readUInt32BE(4);
      frames.push({
        kind: payload.readUInt32BE(0),
        meta: JSON.parse(payload.subarray(8, 8 + len).toString("utf8")),
        image: payload.subarray(8 + len),
      });
    }),
  );

  await page.goto("/demo");
  await expect(page.locator('main[data-hydrated="true"]')).toBeVisible({ timeout: 15_000 });
  await expect(page.locator("#connection")).toHaveText("connected", { timeout: 10_000 });
  // The shipped model: 64×64 DCGAN faces, centred dlib, trained (not the 1-step test fixture).
  await expect(page.locator("#model-info")).toContainText("64×64");
  await expect(page.locator("#model-info")).toContainText("centred");
  await expect(page.locator("#no-model")).toHaveCount(0);

  await page.locator("#photo-input").setInputFiles(PHOTO);
  await expect(page.locator("#aligned-crop")).toBeVisible({ timeout: 20_000 });
  await page.locator("#m-input").fill("0.5");
  await page.locator("#steps-input").fill("20");
  await page.locator("#seed-input").fill("7");
  await page.locator("#start").click();

  await expect(page.locator("#progress-text")).toContainText("Done: 20 steps", { timeout: 90_000 });
  const previews = frames.filter((f) => f.kind === 1);
  expect(previews.map((f) => f.meta.step)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
  for (const f of previews) {
    expect(f.image.subarray(1, 4).toString()).toBe("PNG");
    // IHDR: width and height of every streamed frame are the DCGAN's 64 px.
    expect([f.image.readUInt32BE(16), f.image.readUInt32BE(20)]).toEqual([64, 64]);
  }
  // Early and late estimates differ: the run denoises rather than repeating one picture.
  expect(previews[0].image.equals(previews[19].image)).toBe(false);
  const final = frames.filter((f) => f.kind === 2);
  expect(final).toHaveLength(1);
  await expect(page.locator("#similarity")).toHaveText(/^m = \+0\.50: similarity [+-]\d\.\d{3}, /);

  // An m-sweep of the same face, then the page as a visitor sees it on a desktop and on a phone.
  await page.locator("#sweep").click();
  await expect(page.locator("#progress-text")).toContainText("Done: 20 steps", { timeout: 120_000 });
  await expect(page.locator("#gallery figure")).toHaveCount(2);
  await expect(page.locator("#panel-labels span")).toHaveCount(5);
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.locator("#result").scrollIntoViewIfNeeded();
  await page.screenshot({ path: path.join(SHOTS, "demo-desktop.png"), fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.screenshot({ path: path.join(SHOTS, "demo-phone.png"), fullPage: true });
  expect(errors).toEqual([]);
});

test("without an admin password, /admin says so up front and how to turn it on", async ({ page }) => {
  // This server (as scripts/serve.sh starts it) has no CEMIFACE_ADMIN_PASSWORD_HASH.
  await page.goto("/admin");
  await expect(page.locator('main[data-hydrated="true"]')).toBeVisible({ timeout: 15_000 });
  await expect(page.locator("#admin-disabled")).toBeVisible();
  await expect(page.locator("p.notice")).toContainText("cemiface hash-password");
  await expect(page.locator('input[type="password"]')).toHaveCount(0);
  await expect(page).toHaveTitle("Admin · CemiFace-rs");
});
