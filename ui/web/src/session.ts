// Who this browser session is, as the API said (GET /api/v1/whoami).

import type { Whoami } from "./api";

let me: Whoami | null = null;

export function setMe(w: Whoami | null): void {
  me = w;
}

export function currentUser(): Whoami | null {
  return me;
}

/// Whether the session's key has `role` (everything, when no key is configured); admin
/// includes read, as on the server.
export function may(role: "ingest" | "read" | "admin"): boolean {
  return !me || me.roles.includes(role) || (role === "read" && me.roles.includes("admin"));
}
