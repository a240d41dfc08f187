// Progressive enhancement of the upload form: preview, drag and drop,
// upload and processing progress, inline errors. Without JavaScript the
// plain form posts and the server answers with a redirect and a flash message.
(function () {
  "use strict";
  const form = document.getElementById("upload-form");
  if (!form || !window.fetch) return;
  const input = document.getElementById("image");
  const dropzone = document.getElementById("dropzone");
  const preview = document.getElementById("preview");
  const previewImg = document.getElementById("preview-img");
  const previewInfo = document.getElementById("preview-info");
  const submit = document.getElementById("submit");
  const progress = document.getElementById("progress");
  const bar = document.getElementById("progress-bar");
  const text = document.getElementById("progress-text");
  const messages = document.getElementById("messages");
  let busy = false;
  // One key per chosen file: if the answer to an upload is lost and it is sent
  // again, the server returns the job it already made instead of a second one.
  let uploadKey = null;

  function newKey() {
    const bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.from(bytes, function (b) { return b.toString(16).padStart(2, "0"); }).join("");
  }

  function size(bytes) {
    if (bytes < 1024) return bytes + " bytes";
    if (bytes < 1048576) return (bytes / 1024).toFixed(1) + " kB";
    return (bytes / 1048576).toFixed(1) + " MB";
  }

  function showMessage(message, kind) {
    messages.replaceChildren();
    const p = document.createElement("p");
    p.className = "flash flash-" + (kind || "error");
    p.textContent = message;
    messages.appendChild(p);
  }

  function showPreview() {
    const file = input.files[0];
    if (previewImg.src) URL.revokeObjectURL(previewImg.src);
    if (!file) { preview.hidden = true; return; }
    messages.replaceChildren();
    uploadKey = newKey();
    previewImg.hidden = false;
    previewImg.src = URL.createObjectURL(file);
    previewInfo.textContent = file.name + " · " + size(file.size);
    previewImg.onload = function () {
      previewInfo.textContent = file.name + " · " + previewImg.naturalWidth + "×" +
        previewImg.naturalHeight + " px · " + size(file.size);
    };
    previewImg.onerror = function () {
      previewImg.hidden = true;  // not an image the browser can show; the server will say more
      previewInfo.textContent = file.name + " · " + size(file.size) + " (no preview)";
    };
    preview.hidden = false;
  }

  input.addEventListener("change", showPreview);
  ["dragenter", "dragover"].forEach(function (name) {
    dropzone.addEventListener(name, function (event) {
      event.preventDefault();
      dropzone.classList.add("dragover");
    });
  });
  ["dragleave", "drop"].forEach(function (name) {
    dropzone.addEventListener(name, function () { dropzone.classList.remove("dragover"); });
  });
  dropzone.addEventListener("drop", function (event) {
    event.preventDefault();
    if (event.dataTransfer.files.length) {
      input.files = event.dataTransfer.files;
      showPreview();
    }
  });

  async function pollProgress(stop) {
    while (!stop.done) {
      try {
        const response = await fetch("/api/progress", { headers: { Accept: "application/json" } });
        const data = await response.json();
        const job = data.running[0];
        if (!stop.done && job && job.total) {
          bar.max = job.total;
          bar.value = job.done;
          text.textContent = job.op
            ? "Processing: " + job.op + " (" + job.done + " of " + job.total + " done)"
            : "Starting…";
        }
      } catch (err) { /* a missed poll is harmless; the next one catches up */ }
      await new Promise(function (resolve) { setTimeout(resolve, 250); });
    }
  }

  function send(data) {
    return new Promise(function (resolve, reject) {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.setRequestHeader("Idempotency-Key", uploadKey || newKey());
      xhr.responseType = "json";
      xhr.upload.onprogress = function (event) {
        if (!event.lengthComputable) return;
        bar.max = event.total;
        bar.value = event.loaded;
        text.textContent = "Uploading… " + Math.round(100 * event.loaded / event.total) + "%";
        if (event.loaded === event.total) text.textContent = "Upload complete, starting…";
      };
      xhr.onload = function () { resolve(xhr); };
      xhr.onerror = function () { reject(new Error("The connection to the server was lost.")); };
      xhr.send(data);
    });
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    if (busy) return;
    const file = input.files[0];
    if (!file) { showMessage("Choose an image file to upload."); return; }
    const maxBytes = Number(form.dataset.maxBytes || 0);
    if (maxBytes && file.size > maxBytes) {
      showMessage("The file is " + size(file.size) + "; the limit is " + size(maxBytes) + ".");
      return;
    }
    busy = true;
    submit.disabled = true;
    submit.textContent = "Processing…";
    messages.replaceChildren();
    progress.hidden = false;
    const stop = { done: false };
    try {
      const request = send(new FormData(form));
      pollProgress(stop);
      const xhr = await request;
      if (xhr.status === 201 || xhr.status === 200) {
        text.textContent = "Done.";
        window.location.reload();  // the server renders the new gallery
        return;
      }
      const reason = xhr.response && xhr.response.error;
      showMessage(reason || "The server answered " + xhr.status + "; please try again.");
    } catch (err) {
      showMessage(err.message);
    } finally {
      stop.done = true;
    }
    busy = false;
    submit.disabled = false;
    submit.textContent = "Process image";
    progress.hidden = true;
  });
})();
