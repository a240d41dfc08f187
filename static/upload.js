// Progressive enhancement of the upload form and the gallery: previews, drag
// and drop, several files queued one job each with their own progress, the
// new gallery shown in place (the form keeps its choices), and jobs still
// running after a reload followed until they finish. Without JavaScript the
// plain form posts every chosen file and the server answers with a redirect
// and flash messages.
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
  const queue = document.getElementById("queue");
  const messages = document.getElementById("messages");
  const status = document.getElementById("status");
  const gallery = document.getElementById("gallery");
  const maxBytes = Number(form.dataset.maxBytes || 0);
  const submitText = submit.textContent;
  // One key per chosen file: if the answer to an upload is lost and it is sent
  // again, the server returns the job it already made instead of a second one.
  const keys = new WeakMap();
  let busy = false;
  let watching = false;

  function newKey() {
    const bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    return Array.from(bytes, function (b) { return b.toString(16).padStart(2, "0"); }).join("");
  }

  // The server's convention (web/limits.py human_size): 1 kB = 1,024 bytes, 1 MB = 1,024 kB.
  function size(bytes) {
    const oneDecimal = function (x) { return x.toFixed(1).replace(/\.0$/, ""); };
    if (bytes >= 1073741824) return oneDecimal(bytes / 1073741824) + " GB";
    if (bytes >= 1048576) return oneDecimal(bytes / 1048576) + " MB";
    if (bytes < 1024) return bytes + " bytes";
    return Math.round(bytes / 1024) + " kB";
  }

  // The server writes times in UTC; people read them in their own time zone.
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      const when = new Date(el.getAttribute("datetime"));
      if (!isNaN(when)) el.textContent = when.toLocaleString([], { dateStyle: "medium", timeStyle: "short" });
    });
  }

  function showMessage(message) {
    messages.replaceChildren();
    addMessage(message);
  }

  function addMessage(message) {
    const p = document.createElement("p");
    p.className = "flash flash-error";
    p.textContent = message;
    messages.appendChild(p);
  }

  function announce(message) {
    status.textContent = message;
  }

  function showChoice() {
    const files = Array.from(input.files);
    if (previewImg.src) URL.revokeObjectURL(previewImg.src);
    previewImg.removeAttribute("src");
    if (!files.length) { preview.hidden = true; return; }
    messages.replaceChildren();
    files.forEach(function (file) { keys.set(file, newKey()); });
    const total = files.reduce(function (sum, file) { return sum + file.size; }, 0);
    preview.hidden = false;
    if (files.length > 1) {
      previewImg.hidden = true;
      previewInfo.textContent = files.length + " photos · " + size(total) + " in all";
      return;
    }
    const file = files[0];
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
  }

  input.addEventListener("change", showChoice);
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
      showChoice();
    }
  });

  // A row of the queue: the file's name, a bar and what is happening to it.
  function queueRow(file, index, files) {
    const li = document.createElement("li");
    const name = document.createElement("span");
    name.className = "queue-name";
    name.textContent = file.name + " · " + size(file.size);
    const bar = document.createElement("progress");
    bar.setAttribute("aria-label", "Progress of " + file.name);
    bar.max = 100;
    bar.value = 0;
    const text = document.createElement("span");
    text.className = "queue-text";
    text.textContent = "Waiting";
    li.append(name, bar, text);
    queue.appendChild(li);
    return {
      li: li,
      set: function (percent, message, kind) {
        bar.value = percent;
        bar.textContent = percent + "%";
        text.textContent = message;
        li.className = kind || "";
        // A refusal is also said next to the form, where errors are announced.
        if (kind === "error") addMessage(files.length > 1 ? file.name + ": " + message : message);
      },
    };
  }

  function images(count) {
    return count + (count === 1 ? " image" : " images");
  }

  function stepText(job) {
    return job.label ? job.label + " (" + job.done + " of " + job.total + " done)" : "Starting";
  }

  async function runningJobs() {
    const response = await fetch("/api/progress", { headers: { Accept: "application/json" } });
    return (await response.json()).running;
  }

  async function followProgress(key, row, stop) {
    while (!stop.done) {
      try {
        const job = (await runningJobs()).find(function (j) { return j.key === key; });
        if (!stop.done && job) row.set(job.percent || 0, stepText(job) + "… " + (job.percent || 0) + "%");
      } catch (err) { /* a missed poll is harmless; the next one catches up */ }
      await new Promise(function (resolve) { setTimeout(resolve, 300); });
    }
  }

  function send(data, key, row) {
    return new Promise(function (resolve, reject) {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", form.action);
      xhr.setRequestHeader("Accept", "application/json");
      xhr.setRequestHeader("Idempotency-Key", key);
      xhr.responseType = "json";
      xhr.upload.onprogress = function (event) {
        if (!event.lengthComputable) return;
        const percent = Math.round(100 * event.loaded / event.total);
        row.set(percent, event.loaded === event.total ? "Uploaded, starting…" : "Uploading… " + percent + "%");
      };
      xhr.onload = function () { resolve(xhr); };
      xhr.onerror = function () { reject(new Error("The connection to the server was lost; please try again.")); };
      xhr.send(data);
    });
  }

  // Upload one file as its own job; return the job, or null (the row says why).
  async function processFile(file, row) {
    const data = new FormData(form);
    data.set("image", file, file.name);
    // The exact size of the body the browser will send, multipart framing
    // included: the server's MAX_CONTENT_LENGTH applies to all of it. The
    // framing is measured around an empty file of the same name and type,
    // so the photo itself is never read for this.
    const framing = new FormData(form);
    framing.set("image", new File([], file.name, { type: file.type }), file.name);
    const bytes = (await new Response(framing).blob()).size + file.size;
    if (maxBytes && bytes > maxBytes) {
      row.set(0, "Not sent: with the form, the upload is " + size(bytes) + "; the limit is " + size(maxBytes) + ".",
        "error");
      return null;
    }
    const key = keys.get(file) || newKey();
    const stop = { done: false };
    try {
      const request = send(data, key, row);
      followProgress(key, row, stop);
      const xhr = await request;
      if (xhr.status === 201 || xhr.status === 200) {
        const job = xhr.response;
        row.set(100, "Done: " + images(job.outputs.length), "ok");
        return job;
      }
      const reason = xhr.response && xhr.response.error;
      row.set(0, reason || "The server answered " + xhr.status + "; please try again.", "error");
    } catch (err) {
      row.set(0, err.message, "error");
    } finally {
      stop.done = true;
    }
    return null;
  }

  // Show the server's new gallery in place: the form keeps what was chosen.
  async function refreshGallery() {
    const response = await fetch("/", { headers: { Accept: "text/html" } });
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = page.getElementById("gallery");
    if (!fresh) return;
    gallery.replaceChildren.apply(gallery, Array.from(fresh.childNodes));
    localTimes(gallery);
    watchRunning();
  }

  // Jobs the server was already running when the page loaded (a reload, another tab);
  // one loop at a time follows them, until none is left.
  async function watchRunning() {
    if (watching || !gallery.querySelector("[data-running]")) return;
    watching = true;
    try {
      for (;;) {
        await new Promise(function (resolve) { setTimeout(resolve, 500); });
        let running;
        try { running = await runningJobs(); } catch (err) { continue; }
        const byId = new Map(running.map(function (job) { return [job.id, job]; }));
        const cards = Array.from(gallery.querySelectorAll("[data-running]"));
        if (!cards.length) return;
        if (cards.some(function (card) { return !byId.has(card.dataset.running); })) {
          // This loop goes on following the cards the new gallery still has.
          await refreshGallery();
          announce("A photo that was being processed is done.");
          continue;
        }
        cards.forEach(function (card) {
          const job = byId.get(card.dataset.running);
          card.querySelector("progress").value = job.percent || 0;
          card.querySelector(".running-text").textContent = "Processing: " + stepText(job) + "… " +
            (job.percent || 0) + "%";
        });
      }
    } finally {
      watching = false;
    }
  }

  form.addEventListener("submit", async function (event) {
    event.preventDefault();
    if (busy) return;
    const files = Array.from(input.files);
    if (!files.length) { showMessage("Choose an image file to upload."); input.focus(); return; }
    if (!form.querySelector("input[name=ops][type=checkbox]:checked")) {
      showMessage("Choose at least one operation.");
      form.querySelector("input[name=ops][type=checkbox]").focus();
      return;
    }
    busy = true;
    submit.disabled = true;
    submit.textContent = "Processing…";
    messages.replaceChildren();
    announce("");
    queue.replaceChildren();
    queue.hidden = false;
    const rows = files.map(queueRow);
    queue.scrollIntoView({ block: "nearest" });
    let newest = null;
    for (let i = 0; i < files.length; i++) {
      const job = await processFile(files[i], rows[i]);
      if (!job) continue;
      newest = job;
      announce("Done: " + images(job.outputs.length) + " from " + job.source.name + " (" + (i + 1) + " of " +
        files.length + ").");
      try { await refreshGallery(); } catch (err) { /* the next refresh, or a reload, shows it */ }
    }
    const failed = rows.filter(function (row) { return row.li.className === "error"; }).length;
    announce(failed
      ? (files.length - failed) + " of " + files.length + " photos done; " + failed +
        (failed === 1 ? " was" : " were") + " not processed (see above)."
      : (files.length === 1 ? "Done: " + images(newest.outputs.length) + " from " + newest.source.name + "."
        : "Done: all " + files.length + " photos processed."));
    busy = false;
    submit.disabled = false;
    submit.textContent = submitText;
    input.value = "";
    showChoice();
    const heading = newest && document.getElementById("title-" + newest.id);
    if (heading && !failed) {
      heading.closest("article").scrollIntoView({ block: "start" });
      heading.focus({ preventScroll: true });
    }
  });

  localTimes(gallery);
  watchRunning();
})();
