// The call review workspace: player, transcript that follows playback, scorecard with
// clickable evidence, keyboard shortcuts. Seeking happens here in the browser, so a jump to
// evidence or to a transcript line never reruns the Streamlit script.
//
// Every piece of call text (speech, names, reasons, notes) is put in the page with
// textContent, never innerHTML: a transcript is what people said, not markup.
//
// The recording arrives inside the component's data (base64) for this render only and is
// played from a blob: URL that exists in this tab alone; no server address serves it.

const PLACEHOLDER = /\[([A-Z][A-Z0-9_]*)\]/g
const OUTCOME_ICON = { pass: "✔", fail: "✖", na: "–" }
const DECISIONS = ["pass", "fail", "na"]
const FOLLOW_PAUSE_MS = 4000 // a reviewer who scrolls the transcript is not pulled back at once

function el(tag, cls, text) {
  const e = document.createElement(tag)
  if (cls) e.className = cls
  if (text !== undefined && text !== null) e.textContent = String(text)
  return e
}

function fmt(seconds) {
  const s = Math.max(0, Number(seconds) || 0)
  const m = Math.floor(s / 60)
  return `${m}:${(s - m * 60).toFixed(1).padStart(4, "0")}`
}

// Speech with redaction placeholders like [CARD_NUMBER] marked, as text nodes only.
function speech(text) {
  const frag = document.createDocumentFragment()
  let last = 0
  for (const m of String(text || "").matchAll(PLACEHOLDER)) {
    if (m.index > last) frag.append(document.createTextNode(text.slice(last, m.index)))
    frag.append(el("span", "redacted", m[0]))
    last = m.index + m[0].length
  }
  if (last < String(text || "").length) frag.append(document.createTextNode(text.slice(last)))
  return frag
}

function blobUrl(b64, mime) {
  const bin = atob(b64)
  const bytes = new Uint8Array(bin.length)
  for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i)
  return URL.createObjectURL(new Blob([bytes], { type: mime }))
}

// Scroll a box (not the page) so that `child` is visible inside it.
function keepVisible(box, child, margin = 24) {
  const top = child.offsetTop // the box is position: relative, the offset parent
  const bottom = top + child.offsetHeight
  if (top < box.scrollTop + margin) box.scrollTop = Math.max(0, top - margin)
  else if (bottom > box.scrollTop + box.clientHeight - margin)
    box.scrollTop = bottom - box.clientHeight + margin
}

class Workspace {
  constructor(root, api) {
    this.root = root
    this.api = api
    this.gen = 0
    this.url = null
    this.audioId = null
    this.seeks = 0
    this.userScrolledAt = 0
    this.current = -1
    this.selected = -1
    this.evidenceTurn = 0
    this.onKey = this.onKey.bind(this)
  }

  build(data) {
    this.data = data
    this.callId = data.call_id
    const review = data.mode === "review"
    const ws = el("div", review ? "ws" : "ws player-only")
    ws.dataset.call = data.call_id
    this.ws = ws

    const left = el("div", "left")
    const bar = el("div", "player")
    if (data.label) bar.append(el("div", "label", data.label))
    this.audio = el("audio")
    this.audio.controls = true
    this.audio.preload = "auto"
    this.audio.addEventListener("timeupdate", () => this.follow())
    this.audio.addEventListener("seeked", () => this.follow(true))
    bar.append(this.audio)
    this.noAudio = el("div", "muted", "No recording is stored for this call.")
    bar.append(this.noAudio)
    if (data.note) bar.append(el("div", "muted", data.note))
    if (data.lost && data.lost.length) {
      const row = el("div", "lost")
      row.append(el("span", "muted", "Speech without words: "))
      for (const span of data.lost) {
        const b = el("button", "chip", `▶ ${fmt(span.start)}–${fmt(span.end)}`)
        b.title = "Play this stretch of speech that produced no words"
        b.addEventListener("click", () => this.seek(span.start, true))
        row.append(b)
      }
      if (data.lost_more) row.append(el("span", "muted", ` and ${data.lost_more}`))
      bar.append(row)
    }
    left.append(bar)
    ws.append(left)

    if (review) {
      this.buildTranscript(left, data)
      const right = el("div", "right")
      this.buildScorecard(right, data)
      ws.append(right)
      const keys = el("div", "keys")
      keys.textContent =
        "Keys: Space play/pause · ←/→ 5 s back/forward · J/K next/previous item · " +
        "E next evidence of the item" +
        (data.can_decide ? " · 1 pass · 2 fail · 3 n/a (the selected item)" : "")
      ws.append(keys)
      document.addEventListener("keydown", this.onKey)
    }
    this.root.append(ws)
    ws.dataset.seeks = "0"
  }

  buildTranscript(left, data) {
    const head = el("div", "head")
    head.append(el("span", "title", "Transcript"))
    if (data.transcript_caption) head.append(el("span", "muted", data.transcript_caption))
    left.append(head)
    const box = el("div", "tx")
    box.setAttribute("role", "list")
    box.addEventListener("wheel", () => (this.userScrolledAt = Date.now()), { passive: true })
    box.addEventListener("touchmove", () => (this.userScrolledAt = Date.now()), { passive: true })
    this.lines = []
    const utts = data.utterances || []
    if (!utts.length) box.append(el("div", "muted", "No transcript for this call."))
    utts.forEach((u, i) => {
      const line = el("div", `utt role-${u.role}`)
      line.setAttribute("role", "listitem")
      line.dataset.i = String(i)
      line.dataset.start = String(u.start)
      line.title = `Play from ${fmt(u.start)}`
      const meta = el("div", "meta")
      meta.append(el("span", "time", fmt(u.start)))
      meta.append(el("span", `role role-${u.role}`, u.role))
      meta.append(el("span", "speaker", u.speaker))
      if (u.overlap) meta.append(el("span", "tag", "overlap"))
      if (u.mood) meta.append(el("span", "tag", u.mood))
      const text = el("div", "text")
      text.append(speech(u.text))
      line.append(meta, text)
      line.addEventListener("click", () => this.seek(u.start, true))
      box.append(line)
      this.lines.push(line)
    })
    this.starts = utts.map((u) => u.start)
    this.ends = utts.map((u) => u.end)
    this.tx = box
    left.append(box)
  }

  buildScorecard(right, data) {
    const head = el("div", "head")
    head.append(el("span", "title", "Scorecard"))
    if (data.summary) head.append(el("span", "summary", data.summary))
    right.append(head)
    if (data.alert) right.append(el("div", "alert", data.alert))
    const box = el("div", "sc")
    this.items = []
    ;(data.items || []).forEach((it, n) => {
      const card = el("div", `item outcome-${it.outcome}`)
      card.dataset.item = it.item_id
      card.addEventListener("click", () => this.select(n, false))
      const top = el("div", "item-head")
      top.append(el("span", `icon outcome-${it.outcome}`, OUTCOME_ICON[it.outcome] || "?"))
      top.append(el("span", "name", it.name))
      top.append(el("span", "id", it.item_id))
      if (it.critical) top.append(el("span", "critical", "critical"))
      card.append(top)
      const line = `automatic ${it.auto_outcome} · ${it.points} / ${it.possible} points` +
        (it.final_outcome ? ` · final ${it.final_outcome}` : "")
      card.append(el("div", "muted", line))
      if (it.reason) card.append(el("div", "reason", it.reason))
      const evs = el("div", "evidence")
      if (!(it.evidence || []).length && !it.reason)
        evs.append(el("div", "muted", "no evidence recorded"))
      for (const ev of it.evidence || []) {
        const b = el("button", "ev")
        b.title = `Play the recording from ${fmt(ev.start)}`
        b.dataset.start = String(ev.start)
        b.append(el("span", "time", `▶ ${fmt(ev.start)}–${fmt(ev.end)}`))
        if (ev.who) b.append(el("span", "who", ev.who))
        if (ev.text) {
          const q = el("span", "quote")
          q.append(document.createTextNode("“"), speech(ev.text), document.createTextNode("”"))
          b.append(q)
        }
        const bits = []
        if (ev.matched) bits.push(`matched ${ev.matched}`)
        if (ev.similarity !== null && ev.similarity !== undefined)
          bits.push(`similarity ${Number(ev.similarity).toFixed(2)}`)
        if (ev.note) bits.push(ev.note)
        if (bits.length) b.append(el("span", "muted", bits.join(" · ")))
        b.addEventListener("click", (e) => {
          e.stopPropagation()
          this.select(n, false)
          this.seek(ev.start, true)
        })
        evs.append(b)
      }
      card.append(evs)
      const buttons = {}
      if (data.can_decide) {
        const row = el("div", "decide")
        row.append(el("span", "muted", "Your decision: "))
        for (const d of DECISIONS) {
          const b = el("button", "dec", d === it.auto_outcome ? `${d} (confirm)` : d)
          b.dataset.decision = d
          b.addEventListener("click", (e) => {
            e.stopPropagation()
            this.select(n, false)
            this.decide(n, d)
          })
          buttons[d] = b
          row.append(b)
        }
        card.append(row)
      }
      box.append(card)
      this.items.push({ card, buttons, item: it })
    })
    this.sc = box
    right.append(box)
  }

  update(data) {
    this.data = data
    if (data.audio_id !== this.audioId) {
      if (this.url) URL.revokeObjectURL(this.url)
      this.url = data.audio ? blobUrl(data.audio, data.mime || "audio/flac") : null
      this.audioId = data.audio_id
      this.audio.style.display = this.url ? "" : "none"
      this.noAudio.style.display = this.url ? "none" : ""
      if (this.url) {
        this.audio.src = this.url
        if (data.start) this.seek(data.start, !!data.autoplay)
      } else this.audio.removeAttribute("src")
    } else if (data.start && data.start !== this.lastStart) {
      this.seek(data.start, !!data.autoplay)
    }
    this.lastStart = data.start
    const decisions = data.decisions || {}
    for (const { buttons, item } of this.items || []) {
      for (const [d, b] of Object.entries(buttons)) {
        b.classList.toggle("chosen", decisions[item.item_id] === d)
        b.disabled = !!data.locked
      }
    }
    this.ws.dataset.updates = String(Number(this.ws.dataset.updates || 0) + 1)
    this.ws.dataset.ready = "1"
  }

  seek(seconds, play) {
    if (!this.url) return
    this.audio.currentTime = Math.max(0, seconds)
    if (play) this.audio.play().catch(() => {})
    this.seeks += 1
    this.ws.dataset.seeks = String(this.seeks)
    this.ws.dataset.lastSeek = String(seconds)
    this.userScrolledAt = 0
    this.follow(true)
  }

  // The utterance being heard, highlighted and kept in view in the transcript box.
  follow(force) {
    if (!this.lines || !this.lines.length) return
    const t = this.audio.currentTime
    let lo = 0
    let hi = this.starts.length - 1
    let idx = -1
    while (lo <= hi) {
      const mid = (lo + hi) >> 1
      if (this.starts[mid] <= t + 0.05) {
        idx = mid
        lo = mid + 1
      } else hi = mid - 1
    }
    if (idx !== this.current) {
      if (this.current >= 0) this.lines[this.current].classList.remove("current")
      if (idx >= 0) this.lines[idx].classList.add("current")
      this.current = idx
      this.ws.dataset.current = String(idx)
    }
    if (idx >= 0 && (force || Date.now() - this.userScrolledAt > FOLLOW_PAUSE_MS))
      keepVisible(this.tx, this.lines[idx])
  }

  select(n, jump) {
    if (!this.items.length) return
    n = Math.max(0, Math.min(this.items.length - 1, n))
    if (this.selected >= 0) this.items[this.selected].card.classList.remove("selected")
    this.selected = n
    this.evidenceTurn = 0
    const { card, item } = this.items[n]
    card.classList.add("selected")
    keepVisible(this.sc, card)
    if (jump && item.evidence && item.evidence.length) {
      this.seek(item.evidence[0].start, !this.audio.paused)
      this.evidenceTurn = 1
    }
  }

  decide(n, decision) {
    if (!this.data.can_decide || this.data.locked) return
    const { buttons, item } = this.items[n]
    for (const [d, b] of Object.entries(buttons)) b.classList.toggle("chosen", d === decision)
    this.api.setTriggerValue("decide", { item_id: item.item_id, outcome: decision })
  }

  onKey(e) {
    if (e.defaultPrevented || e.ctrlKey || e.metaKey || e.altKey) return
    if (!this.ws.isConnected) return
    const target = e.composedPath()[0]
    const ours = target && target.getRootNode && target.getRootNode() === this.root
    if (!ours && target && target.nodeType === 1) {
      const tag = target.tagName
      const role = target.getAttribute("role") || ""
      if (
        target.isContentEditable ||
        ["INPUT", "TEXTAREA", "SELECT", "BUTTON", "A"].includes(tag) ||
        ["textbox", "combobox", "radio", "checkbox", "slider", "option", "tab", "switch"].includes(role)
      )
        return // typing in a comment or using another control
    }
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key
    const handled = () => {
      e.preventDefault()
      e.stopPropagation()
    }
    if (key === " ") {
      if (this.url) this.audio.paused ? this.audio.play().catch(() => {}) : this.audio.pause()
      handled()
    } else if (key === "ArrowLeft" || key === "ArrowRight") {
      if (!ours && target !== document.body) return
      this.seek(this.audio.currentTime + (key === "ArrowLeft" ? -5 : 5), !this.audio.paused)
      handled()
    } else if (key === "j" || key === "k") {
      this.select(this.selected + (key === "j" ? 1 : -1), true)
      handled()
    } else if (key === "e") {
      if (this.selected < 0) this.select(0, false)
      const evs = this.items[this.selected].item.evidence || []
      if (evs.length) {
        this.seek(evs[this.evidenceTurn % evs.length].start, true)
        this.evidenceTurn += 1
      }
      handled()
    } else if ((key === "1" || key === "2" || key === "3") && this.data.can_decide) {
      if (this.selected < 0) return
      this.decide(this.selected, DECISIONS[Number(key) - 1])
      handled()
    }
  }

  destroy() {
    document.removeEventListener("keydown", this.onKey)
    if (this.url) URL.revokeObjectURL(this.url)
    this.url = null
  }
}

export default function (component) {
  const { data, parentElement, setTriggerValue } = component
  if (!data) return
  let ws = parentElement.__qaWorkspace
  if (!ws || ws.callId !== data.call_id || ws.mode !== data.mode) {
    if (ws) {
      ws.destroy()
      ws.ws.remove()
    }
    ws = new Workspace(parentElement, { setTriggerValue })
    ws.mode = data.mode
    ws.build(data)
    parentElement.__qaWorkspace = ws
  }
  ws.api = { setTriggerValue }
  ws.update(data)
  const gen = ++ws.gen
  return () => {
    // only the latest render's cleanup ends the workspace (when it leaves the page)
    if (ws.gen === gen && parentElement.__qaWorkspace === ws) {
      ws.destroy()
      ws.ws.remove()
      parentElement.__qaWorkspace = null
    }
  }
}
