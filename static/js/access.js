// Access control as the page sees it (the gateway's is off unless a token is set): the login
// form, the role, and Log out. The token typed in is sent once, to POST login, which answers
// with an HttpOnly cookie; the page never stores the token nor puts it in a URL, and clears the
// field once it is accepted.

import { retryAfterSeconds } from "./retry-after.js";

const REASONS = {
  login: "This gateway needs an access token. Log in to see KATO's figures, sessions and alerts.",
  admin:
    "Acknowledging alerts needs the admin token. Logging in with it keeps everything the " +
    "viewer token shows.",
};

export function createAccess({ form, logout, role, onLogin, onLogout }) {
  const input = form.querySelector("[data-testid=login-token]");
  const submit = form.querySelector("[data-testid=login-submit]");
  const cancel = form.querySelector("[data-testid=login-cancel]");
  const reason = form.querySelector("[data-testid=login-reason]");
  const error = form.querySelector("[data-testid=login-error]");
  let why = null; // why the form shows: "login" or "admin"; null while hidden
  let current = { enabled: false, role: null };

  /** Shows the form; `required` when nothing can show without a login (no Cancel then). */
  function show(reasonKey, { required = false } = {}) {
    if (why === "login" && reasonKey === "admin" && form.dataset.required === "true") return;
    const opening = form.hidden;
    why = reasonKey;
    reason.textContent = REASONS[reasonKey];
    form.dataset.reason = reasonKey;
    form.dataset.required = String(required);
    cancel.hidden = required;
    form.hidden = false;
    if (opening) {
      say("");
      input.focus();
    }
  }

  function hide() {
    form.hidden = true;
    why = null;
    input.value = "";
    say("");
  }

  function say(text) {
    error.textContent = text;
    error.hidden = !text;
  }

  function setRole({ enabled, role: newRole, session = true }) {
    current = { enabled: Boolean(enabled), role: newRole || null };
    const loggedIn = current.enabled && current.role !== null;
    // Log out only undoes a cookie login; open reading (only an admin token set) has none.
    logout.hidden = !(loggedIn && session);
    role.hidden = !loggedIn;
    role.textContent = current.role === "admin" ? "Admin" : "Viewer";
    role.dataset.role = current.role || "";
    role.title =
      current.role === "admin"
        ? "Logged in with the admin token: you may acknowledge alerts"
        : "Logged in with the viewer token: acknowledging alerts needs the admin token";
  }

  /** What this page may do, as the gateway says (GET api/access). */
  async function refresh() {
    try {
      const response = await fetch(new URL("api/access", document.baseURI), {
        cache: "no-store",
        headers: { Accept: "application/json" },
      });
      if (response.ok) setRole(await response.json());
    } catch {
      // the gateway is away: the stream's state says so
    }
  }

  async function login(event) {
    event.preventDefault();
    const token = input.value.trim();
    if (!token) {
      say("Type the access token.");
      input.focus();
      return;
    }
    submit.disabled = true;
    try {
      const response = await fetch(new URL("login", document.baseURI), {
        method: "POST",
        cache: "no-store",
        headers: { "Content-Type": "application/json", Accept: "application/json" },
        body: JSON.stringify({ token }),
      });
      const body = await response.json().catch(() => null);
      if (response.ok) {
        const wanted = why;
        setRole({ enabled: true, role: body?.role });
        if (wanted === "admin" && current.role !== "admin") {
          input.value = "";
          say("That is the viewer token: acknowledging alerts needs the admin token.");
          input.focus();
        } else {
          hide();
        }
        onLogin(current);
      } else if (response.status === 401) {
        say("That token was not accepted.");
        input.select();
      } else if (response.status === 429) {
        const wait = retryAfterSeconds(response.headers.get("Retry-After"));
        say(`Too many wrong tokens from this address: try again in ${wait} s.`);
      } else {
        const text = body && typeof body.error === "string" ? body.error : `HTTP ${response.status}`;
        say(`Not logged in: ${text}`);
      }
    } catch {
      say("Not logged in: the gateway did not answer.");
    } finally {
      submit.disabled = false;
    }
  }

  async function logOut() {
    logout.disabled = true;
    try {
      const response = await fetch(new URL("logout", document.baseURI), {
        method: "POST",
        cache: "no-store",
        headers: { Accept: "application/json" },
      });
      if (response.ok) {
        setRole({ enabled: current.enabled, role: null });
        onLogout();
        refresh(); // where reads are open (only an admin token set), the page is still a viewer
      }
    } catch {
      // the gateway is away: the button stays for another try
    } finally {
      logout.disabled = false;
    }
  }

  form.addEventListener("submit", login);
  input.addEventListener("input", () => say(""));
  cancel.addEventListener("click", hide);
  form.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !cancel.hidden) hide();
  });
  logout.addEventListener("click", logOut);

  return {
    show,
    hide,
    refresh,
    get role() {
      return current.role;
    },
    /** Whether the form shows because nothing can show without a login. */
    get required() {
      return !form.hidden && form.dataset.required === "true";
    },
  };
}
