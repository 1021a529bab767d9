// casegate console: two small conveniences; every page works without them.
"use strict";

// Override form: choosing an action fills the parameters box with that action's parameter
// names, so the operator only types the values.
function fillParams(select) {
  const box = document.getElementById(select.dataset.paramsTarget);
  const option = select.selectedOptions[0];
  if (!box || !option || !option.dataset.template) return;
  const names = JSON.parse(option.dataset.template);
  box.value = JSON.stringify(Object.fromEntries(names.map((n) => [n, null])), null, 1);
}
document.addEventListener("change", (event) => {
  const select = event.target;
  if (select instanceof HTMLSelectElement && select.dataset.paramsTarget) fillParams(select);
});
for (const select of document.querySelectorAll("select[data-params-target]")) fillParams(select);

// A form submits once: a second click would only replay the same idempotency key anyway.
document.addEventListener("submit", (event) => {
  const form = event.target;
  if (form.method.toLowerCase() !== "post") return;
  for (const button of form.querySelectorAll("button[type=submit]")) button.disabled = true;
});
