import { JSDOM } from "jsdom";
const dom = new JSDOM("<!doctype html><html><body></body></html>");
globalThis.window = dom.window;
globalThis.document = dom.window.document;
for (const k of ["navigator", "Element", "HTMLElement", "DOMParser", "Node"]) {
  try { if (!(k in globalThis)) globalThis[k] = dom.window[k]; } catch (e) {}
}
const { default: mermaid } = await import("mermaid");
let input = "";
for await (const chunk of process.stdin) input += chunk;
const diagrams = input.split("\n%%SPLIT%%\n").filter((d) => d.trim());
let failed = 0;
for (const text of diagrams) {
  try {
    const ok = await mermaid.parse(text);
    console.log("ok", JSON.stringify(ok));
  } catch (e) {
    failed++;
    console.log("error", String(e && e.message || e));
  }
}
process.exit(failed ? 1 : 0);
