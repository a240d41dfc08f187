// The form remembers its choices: the ops ticked, their arguments and the output settings are
// kept in this browser (localStorage) and filled in again on the next visit, a reload or Back.
// Presets fill the form with a named set of choices. Without JavaScript the server fills the
// form with what was last posted (web/jobs.py remember_choices).
(function () {
  "use strict";
  const form = document.getElementById("upload-form");
  if (!form) return;
  const STORE = "darkroom.choices";
  const presets = document.getElementById("presets");
  const status = document.getElementById("status");
  const OUTPUT_FIELDS = ["format", "quality", "metadata", "colour"];

  function opBoxes() {
    return Array.from(form.querySelectorAll("input[name=ops][type=checkbox]"));
  }

  function argFields(op) {
    return Array.from(form.querySelectorAll("[name='arg-" + op + "']"));
  }

  // A field's value in the shape the server keeps: a box's value if ticked, else "".
  function valueOf(field) {
    if (field.type === "checkbox") return field.checked ? field.value : "";
    return field.value;
  }

  function setValue(field, value) {
    if (field.type === "checkbox") field.checked = value === field.value;
    else field.value = value;
  }

  function read() {
    const choices = { ops: [], args: {} };
    opBoxes().forEach(function (box) {
      if (box.checked) choices.ops.push(box.value);
      const args = argFields(box.value);
      if (args.length) choices.args[box.value] = args.map(valueOf);
    });
    OUTPUT_FIELDS.forEach(function (name) { choices[name] = valueOf(form.elements[name]); });
    return choices;
  }

  // Fill the form with ``choices``; what they do not name goes back to its default.
  function apply(choices) {
    opBoxes().forEach(function (box) {
      box.checked = (choices.ops || []).indexOf(box.value) >= 0;
      const given = (choices.args || {})[box.value] || [];
      argFields(box.value).forEach(function (field, i) {
        setValue(field, typeof given[i] === "string" && given[i] ? given[i] : field.dataset.default);
      });
    });
    OUTPUT_FIELDS.forEach(function (name) {
      const field = form.elements[name];
      const value = choices[name];
      setValue(field, typeof value === "string" ? value : field.dataset.default || "");
      // A remembered format this server no longer offers falls back to its default.
      if (field.tagName === "SELECT" && field.selectedIndex < 0) field.value = field.dataset.default;
    });
  }

  function save() {
    try { localStorage.setItem(STORE, JSON.stringify(read())); } catch (err) { /* storage off: nothing kept */ }
  }

  function restore() {
    let kept = null;
    try { kept = JSON.parse(localStorage.getItem(STORE)); } catch (err) { return; }
    if (kept && typeof kept === "object" && Array.isArray(kept.ops)) apply(kept);
  }

  restore();
  form.addEventListener("change", function (event) {
    if (event.target.type !== "file") save();
  });
  form.addEventListener("input", function (event) {
    if (event.target.type === "text" || event.target.type === "number") save();
  });

  presets.hidden = false;
  presets.addEventListener("click", function (event) {
    const button = event.target.closest("button[data-preset]");
    if (!button) return;
    apply(JSON.parse(button.dataset.preset));
    save();
    status.textContent = "The form is set to “" + button.textContent.trim() + "”.";
  });
})();
