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
  const batchProgress = document.getElementById("batch-progress");
  const batchBar = document.getElementById("batch-bar");
  const batchText = document.getElementById("batch-text");
  const maxBytes = Number(form.dataset.maxBytes || 0);
  const submitText = submit.textContent;
  // One key per chosen file: if the answer to an upload is lost and it is sent
  // again, the server returns the job it already made instead of a second one.
  const keys = new WeakMap();
  let busy = false;  // a batch is being sent
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
    addMessage(message, "error");
  }

  function addMessage(message, kind) {
    const p = document.createElement("p");
    p.className = "flash flash-" + kind;
    p.textContent = message;
    messages.appendChild(p);
  }

  // The live line under the form; a wait is said in the colour of waiting, not of success.
  function announce(message, tone) {
    status.textContent = message;
    status.classList.toggle("waiting", tone === "waiting");
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
  // Ctrl-V / Cmd-V anywhere but in a text field chooses the images on the clipboard (a screenshot).
  document.addEventListener("paste", function (event) {
    if (event.target.closest && event.target.closest("input[type=text], input[type=number], textarea")) return;
    const pasted = Array.from(event.clipboardData ? event.clipboardData.files : []).filter(function (file) {
      return file.type.startsWith("image/");
    });
    if (!pasted.length) return;
    event.preventDefault();
    const transfer = new DataTransfer();
    pasted.forEach(function (file) { transfer.items.add(file); });
    input.files = transfer.files;
    showChoice();
    announce(pasted.length === 1 ? "Pasted " + pasted[0].name + "." : "Pasted " + pasted.length + " images.");
  });

  // A row of the queue: the file's name, a bar and what is happening to it.
  function queueRow(file) {
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
    text.textContent = "Waiting for its turn";
    li.append(name, bar, text);
    queue.appendChild(li);
    return {
      li: li,
      set: function (percent, message, kind) {
        bar.value = percent;
        bar.textContent = percent + "%";
        text.textContent = message;
        li.className = kind || "";
      },
    };
  }

  function images(count) {
    return count + (count === 1 ? " image" : " images");
  }

  function files(count) {
    return count + (count === 1 ? " file" : " files");
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
      await sleep(300);
    }
  }

  function sleep(ms) {
    return new Promise(function (resolve) { setTimeout(resolve, ms); });
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
      xhr.onerror = function () { reject(new Error("The connection to the server was lost.")); };
      xhr.send(data);
    });
  }

  // The batch: every chosen file is an item, sent one after another, each as a job of its own.
  // A refusal that says when to come back (429 and 503 with Retry-After) is waited out and
  // sent again under the same Idempotency-Key, so a batch finishes without anyone watching.
  const batch = [];
  // The longest wait the page sits out by itself; past it, the file is refused with the server's words.
  const MAX_WAIT_SECONDS = 15 * 60;
  // How often a lost connection or an upload still being processed is tried again.
  const MAX_ATTEMPTS = 5;

  function pending() {
    return batch.filter(function (item) { return !item.outcome; });
  }

  // The batch as a whole, above its rows: how many files are done, by share of all.
  function showBatchProgress() {
    const finished = batch.length - pending().length;
    batchProgress.hidden = batch.length < 2;
    batchBar.value = Math.round(100 * finished / batch.length);
    batchText.textContent = finished + " of " + files(batch.length) + " done";
  }

  // The form's fields as they were when the files were added: later files may ask for other ops.
  function fields() {
    const data = new FormData(form);
    data.delete("image");
    return data;
  }

  async function bodySize(item) {
    // The exact size of the body the browser will send, multipart framing
    // included: the server's MAX_CONTENT_LENGTH applies to all of it. The
    // framing is measured around an empty file of the same name and type,
    // so the photo itself is never read for this.
    const framing = body(item, new File([], item.file.name, { type: item.file.type }));
    return (await new Response(framing).blob()).size + item.file.size;
  }

  function body(item, file) {
    const data = new FormData();
    item.fields.forEach(function (value, name) { data.append(name, value); });
    data.append("image", file, item.file.name);
    return data;
  }

  function retryAfter(xhr) {
    if (xhr.status !== 429 && xhr.status !== 503) return null;
    const seconds = Number(xhr.getResponseHeader("Retry-After"));
    return Number.isFinite(seconds) && seconds >= 0 ? seconds : null;
  }

  function duration(seconds) {
    if (seconds < 90) return seconds + " s";
    const minutes = Math.round(seconds / 60);
    return minutes + (minutes === 1 ? " minute" : " minutes");
  }

  async function waitOut(item, seconds, why) {
    item.waiting = true;
    for (let left = Math.ceil(seconds); left > 0; left--) {
      item.row.set(0, why + " Waiting " + duration(left) + ", then it is sent again.", "waiting");
      announceWait(why, left);
      await sleep(1000);
    }
    item.waiting = false;
  }

  // Said once for the whole batch (screen readers hear it), not for every second of every file.
  let lastWaitNotice = "";
  function announceWait(why, left) {
    const notice = why + " The batch goes on by itself.";
    if (notice !== lastWaitNotice || left % 15 === 0) {
      lastWaitNotice = notice;
      announce(notice + " Waiting " + duration(left) + ".", "waiting");
    }
  }

  // Upload one item as its own job; return the job, or null with item.reason saying why.
  async function processItem(item) {
    const row = item.row;
    const bytes = await bodySize(item);
    if (maxBytes && bytes > maxBytes) {
      item.reason = "Not sent: with the form, the upload is " + size(bytes) + "; the limit is " + size(maxBytes) + ".";
      return null;
    }
    for (let attempt = 1; ; attempt++) {
      const stop = { done: false };
      let xhr;
      try {
        const request = send(body(item, item.file), item.key, row);
        followProgress(item.key, row, stop);
        xhr = await request;
      } catch (err) {
        if (attempt >= MAX_ATTEMPTS) { item.reason = err.message + " Please try this file again."; return null; }
        await waitOut(item, 3 * attempt, err.message);
        continue;
      } finally {
        stop.done = true;
      }
      if (xhr.status === 201 || xhr.status === 200) return xhr.response;
      const reason = (xhr.response && xhr.response.error) || "The server answered " + xhr.status + ".";
      const wait = retryAfter(xhr);
      if (wait !== null && wait <= MAX_WAIT_SECONDS) {
        await waitOut(item, wait, xhr.status === 429 ? "The server's limit for your address is reached."
          : "The server is busy.");
        continue;
      }
      if (xhr.status === 409 && attempt < MAX_ATTEMPTS * 4) {  // sent before, still being processed
        await sleep(1000);
        continue;
      }
      item.reason = reason;
      return null;
    }
  }

  // A look at the page starts no session; before the first upload, ask for one, so that
  // the progress polls sent while that upload runs belong to the same session.
  async function startSession() {
    if (form.dataset.session !== "none") return;
    try {
      await fetch("/api/session?limit=1", { headers: { Accept: "application/json" } });
    } catch (err) { /* the upload starts one; only its progress is not shown */ }
    form.dataset.session = "yes";
  }

  async function runBatch() {
    busy = true;
    queue.setAttribute("aria-busy", "true");
    submit.textContent = "Add to this batch";
    await startSession();
    let newest = null;
    for (let item = pending()[0]; item; item = pending()[0]) {
      queue.scrollTop = Math.max(0, item.row.li.offsetTop - queue.clientHeight / 2);  // the list only, not the page
      const job = await processItem(item);
      item.outcome = job ? "done" : "refused";
      showBatchProgress();
      if (!job) {
        item.row.set(0, item.reason, "error");
        continue;
      }
      newest = job;
      item.row.set(100, "Done: " + images(job.outputs.length), "ok");
      announce("Done: " + images(job.outputs.length) + " from " + job.source.name + " (" +
        batch.filter(function (i) { return i.outcome; }).length + " of " + batch.length + ").");
      try { await refreshGallery(); } catch (err) { /* the next refresh, or a reload, shows it */ }
    }
    busy = false;
    queue.removeAttribute("aria-busy");
    submit.textContent = submitText;
    summarise(newest);
  }

  // One summary for the batch, in the colour of its outcome; each refusal's reason is said
  // once, in its file's row (a batch of one: in the summary, next to the form).
  function summarise(newest) {
    const refused = batch.filter(function (item) { return item.outcome === "refused"; });
    const done = batch.length - refused.length;
    messages.replaceChildren();
    if (!refused.length) {
      announce(batch.length === 1 ? "Done: " + images(newest.outputs.length) + " from " + newest.source.name + "."
        : "Done: all " + files(batch.length) + " processed.");
      const heading = document.getElementById("title-" + newest.id);
      if (heading) {
        heading.closest("article").scrollIntoView({ block: "start" });
        heading.focus({ preventScroll: true });
      }
      return;
    }
    announce("");
    if (batch.length === 1) {
      refused[0].row.set(0, "Not processed", "error");
      addMessage(refused[0].reason, "error");
    } else if (!done) {
      addMessage("None of the " + files(batch.length) + " could be processed; each one's reason is in the list below.",
        "error");
    } else {
      addMessage(done + " of " + files(batch.length) + " done; " + refused.length +
        (refused.length === 1 ? " was" : " were") + " not processed (the reasons are in the list below).", "partial");
    }
  }

  function addFiles(chosen) {
    if (!busy) {  // a new batch: the last one's rows go
      batch.length = 0;
      queue.replaceChildren();
      messages.replaceChildren();
      announce("");
    }
    const settings = fields();
    chosen.forEach(function (file) {
      batch.push({ file: file, key: keys.get(file) || newKey(), fields: settings, row: queueRow(file) });
    });
    queue.hidden = false;
    showBatchProgress();
    queue.scrollIntoView({ block: "nearest" });
    input.value = "";
    showChoice();
    if (!busy) runBatch();
  }

  // Leaving the page would drop the files not yet sent: the browser asks first.
  window.addEventListener("beforeunload", function (event) {
    if (!pending().length) return;
    event.preventDefault();
    event.returnValue = "";
  });

  // Show the server's new gallery in place: the form keeps what was chosen.
  async function refreshGallery() {
    const response = await fetch("/", { headers: { Accept: "text/html" } });
    const page = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = page.getElementById("gallery");
    if (!fresh) return;
    hideDeleted(fresh);
    gallery.replaceChildren.apply(gallery, Array.from(fresh.childNodes));
    jobCount(-deletions.size);
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

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    const chosen = Array.from(input.files);
    if (!chosen.length) { showMessage("Choose an image file to upload."); input.focus(); return; }
    if (!form.querySelector("input[name=ops][type=checkbox]:checked")) {
      showMessage("Choose at least one operation.");
      form.querySelector("input[name=ops][type=checkbox]").focus();
      return;
    }
    addFiles(chosen);
  });

  // Deleting in place: the photo leaves the gallery at once and is deleted on the server some
  // seconds later, unless its Undo is pressed first (or at once, if the page is left).
  const toasts = document.getElementById("toasts");
  const deletions = new Map();  // job id -> {form, card, toast, timer}
  const UNDO_SECONDS = 8;

  function jobCount(change) {
    const count = gallery.querySelector("#gallery-title .count");
    const now = count ? Number(count.textContent.replace(/\D/g, "")) + change : 0;
    if (count) count.textContent = "(" + now + ")";
  }

  function nextFocus(card) {
    const visible = function (el) { return el && el.matches("article.job") && !el.hidden; };
    let next = card.nextElementSibling;
    while (next && !visible(next) && next.matches("article")) next = next.nextElementSibling;
    if (visible(next)) return next.querySelector("h3");
    let previous = card.previousElementSibling;
    while (previous && !visible(previous) && previous.matches("article")) previous = previous.previousElementSibling;
    return visible(previous) ? previous.querySelector("h3") : document.getElementById("gallery-title");
  }

  function hideDeleted(root) {
    deletions.forEach(function (deletion, id) {
      const card = root.querySelector("#job-" + CSS.escape(id));
      if (card) card.hidden = true;
    });
  }

  function commitDeletion(id) {
    const deletion = deletions.get(id);
    if (!deletion) return;
    deletions.delete(id);
    clearTimeout(deletion.timer);
    deletion.toast.remove();
    // keepalive: a deletion the page's leaving commits still reaches the server.
    fetch(deletion.form.action, { method: "POST", headers: { Accept: "application/json" }, keepalive: true })
      .then(function (response) {
        if (!response.ok && response.status !== 404) throw new Error("The server answered " + response.status + ".");
        // The last photo gone: the server's page says what an empty gallery offers.
        if (!gallery.querySelector("article.job:not([hidden])")) return refreshGallery().catch(function () {});
      })
      .catch(function (err) {
        const card = document.getElementById("job-" + id);
        if (card) { card.hidden = false; jobCount(+1); }
        showMessage(deletion.name + " could not be deleted: " + err.message + " Please try again.");
      });
  }

  function undoDeletion(id) {
    const deletion = deletions.get(id);
    if (!deletion) return;
    deletions.delete(id);
    clearTimeout(deletion.timer);
    deletion.toast.remove();
    const card = document.getElementById("job-" + id);
    if (!card) return;
    card.hidden = false;
    jobCount(+1);
    announce("");
    const heading = card.querySelector("h3");
    heading.focus();
  }

  gallery.addEventListener("submit", function (event) {
    const deleteForm = event.target.closest("form[data-delete]");
    if (!deleteForm) return;
    event.preventDefault();
    const id = deleteForm.dataset.delete;
    const name = deleteForm.dataset.name;
    const card = deleteForm.closest("article");
    deleteForm.closest("details").open = false;
    const focusTarget = nextFocus(card);
    card.hidden = true;
    jobCount(-1);
    const toast = document.createElement("p");
    toast.className = "toast";
    const text = document.createElement("span");
    text.textContent = "Deleted " + name + ".";
    const undo = document.createElement("button");
    undo.type = "button";
    undo.className = "secondary";
    undo.textContent = "Undo";
    undo.setAttribute("aria-label", "Undo: keep " + name);
    undo.addEventListener("click", function () { undoDeletion(id); });
    toast.append(text, undo);
    toasts.appendChild(toast);
    deletions.set(id, { form: deleteForm, name: name, toast: toast,
      timer: setTimeout(function () { commitDeletion(id); }, UNDO_SECONDS * 1000) });
    focusTarget.focus();
  });

  window.addEventListener("pagehide", function () {
    Array.from(deletions.keys()).forEach(commitDeletion);
  });

  // Escape closes an open confirmation (Delete…, Clear all…) and gives focus back to its question.
  document.addEventListener("keydown", function (event) {
    if (event.key !== "Escape") return;
    const open = document.querySelector("details.confirm[open]");
    if (!open) return;
    open.open = false;
    open.querySelector("summary").focus();
  });

  // Shown again by Back or Forward, the page is as old as its last visit: fetch the gallery afresh.
  window.addEventListener("pageshow", function (event) {
    const navigation = performance.getEntriesByType("navigation")[0];
    if (event.persisted || (navigation && navigation.type === "back_forward")) {
      refreshGallery().catch(function () { /* a reload shows it */ });
    }
  });

  localTimes(gallery);
  watchRunning();
})();
