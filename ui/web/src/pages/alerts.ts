// Alerts: what fires now, recent notifications and their delivery, what waits in the outbox,
// and silences (create, expire).

import * as api from "../api";
import { clear, h, note } from "../dom";
import { ago, time } from "../format";
import { may } from "../session";
import { timeFilter } from "../state";

function matcherText(m: api.Matcher): string {
  return `${m.name}${m.isEqual ? "" : "!"}${m.isRegex ? "~" : "="}"${m.value}"`;
}

/// `name="value"`, `name!="v"`, `name=~"re"`, `name!~"re"`.
export function parseMatcher(s: string): api.Matcher | null {
  const m = /^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*"?(.*?)"?\s*$/.exec(s);
  if (!m) return null;
  return { name: m[1], value: m[3], isRegex: m[2].endsWith("~"), isEqual: !m[2].startsWith("!") };
}

function silenceForm(onDone: () => void): HTMLElement {
  const matchers = h("input", { placeholder: 'slo="checkout-availability", severity="page"', size: 48, "aria-label": "Matchers" }) as HTMLInputElement;
  const hours = h("input", { type: "number", value: "2", min: "0.1", step: "0.5", style: "width:80px", "aria-label": "Hours" }) as HTMLInputElement;
  const who = h("input", { placeholder: "your name", "aria-label": "Created by" }) as HTMLInputElement;
  const comment = h("input", { placeholder: "why", size: 30, "aria-label": "Comment" }) as HTMLInputElement;
  const status = h("span", {});
  const submit = async () => {
    const parsed = matchers.value.split(",").map((x) => x.trim()).filter(Boolean).map(parseMatcher);
    if (parsed.length === 0 || parsed.some((m) => m === null)) {
      clear(status, h("span.bad", {}, 'Matchers look like name="value", name!="value", name=~"regex".'));
      return;
    }
    const h_ = Number(hours.value);
    if (!Number.isFinite(h_) || h_ <= 0) {
      clear(status, h("span.bad", {}, "The silence must last a positive number of hours."));
      return;
    }
    const endsAt = new Date(Date.now() + h_ * 3600e3).toISOString();
    try {
      await api.createSilence({ matchers: parsed as api.Matcher[], endsAt, createdBy: who.value, comment: comment.value });
      onDone();
    } catch (e) {
      clear(status, h("span.bad", {}, (e as Error).message));
    }
  };
  return h(
    "div.row",
    { "data-testid": "silence-form" },
    matchers,
    h("span.muted", {}, "for"),
    hours,
    h("span.muted", {}, "hours by"),
    who,
    comment,
    h("button.primary", { onclick: submit }, "Silence"),
    status,
  );
}

export async function alertsPage(root: HTMLElement): Promise<void> {
  clear(root, h("h1", {}, "Alerts"), note("loading", "Loading…"));
  const [slos, silences, pending, notifications] = await Promise.all([
    api.slos(),
    api.silences(),
    api.pending(),
    api.rows(
      `SELECT time, receiver, integration, status, outcome, attempt, status_code, error, alerts, group_key ` +
        `FROM notifications WHERE ${timeFilter("time")} ORDER BY time DESC LIMIT 200`,
    ),
  ]);
  const firing = slos.flatMap((s) => s.alerts.filter((a) => a.state !== "inactive").map((a) => ({ slo: s, a })));
  const reload = () => void alertsPage(root);
  clear(
    root,
    h("h1", {}, "Alerts"),
    h(
      "div.card",
      {},
      h("h2", { style: "margin-top:0" }, `Firing and pending (${firing.length})`),
      firing.length
        ? h(
            "table.data",
            { "data-testid": "firing-alerts" },
            h("thead", {}, h("tr", {}, ["SLO", "Rule", "Severity", "Group", "State", "Since", "Labels"].map((t) => h("th", {}, t)))),
            h(
              "tbody",
              {},
              firing.map(({ slo, a }) =>
                h(
                  "tr",
                  {},
                  h("td", {}, h("a", { href: `/slos/${encodeURIComponent(slo.name)}` }, slo.name)),
                  h("td", {}, a.rule),
                  h("td", {}, a.severity),
                  h("td", {}, a.group || "–"),
                  h("td", {}, h("span.badge", { class: a.state }, a.state)),
                  h("td", {}, ago(a.firing_since ?? a.since)),
                  h("td.muted", {}, Object.entries(a.labels).map(([k, v]) => `${k}=${v}`).join(", ")),
                ),
              ),
            ),
          )
        : note("empty", "Nothing fires. Alerts come from SLOs (docs/slo.md)."),
    ),
    h(
      "div.card",
      {},
      h("h2", { style: "margin-top:0" }, "Silences"),
      may("admin") ? silenceForm(reload) : h("p.muted", { "data-testid": "read-only" }, "Creating and expiring silences needs a key with the admin role."),
      silences.length
        ? h(
            "table.data",
            { "data-testid": "silences" },
            h("thead", {}, h("tr", {}, ["Matchers", "State", "Ends", "By", "Comment", ""].map((t) => h("th", {}, t)))),
            h(
              "tbody",
              {},
              silences.map((s) =>
                h(
                  "tr",
                  {},
                  h("td", {}, h("code", {}, s.matchers.map(matcherText).join(", "))),
                  h("td", {}, h("span.badge", { class: s.status.state === "active" ? "pending" : "" }, s.status.state)),
                  h("td", {}, s.endsAt ? time(s.endsAt) : "never"),
                  h("td", {}, s.createdBy || "–"),
                  h("td", {}, s.comment),
                  h(
                    "td",
                    {},
                    s.fromConfig
                      ? h("span.muted", {}, "from the config")
                      : s.status.state !== "expired" && may("admin")
                        ? h("button.danger", { onclick: async (e: Event) => {
                          try {
                            await api.expireSilence(s.id);
                            reload();
                          } catch (err) {
                            (e.target as HTMLElement).replaceWith(h("span.bad", {}, (err as Error).message));
                          }
                        } }, "Expire")
                        : null,
                  ),
                ),
              ),
            ),
          )
        : h("p.muted", {}, "No silences."),
    ),
    h(
      "div.card",
      {},
      h("h2", { style: "margin-top:0" }, `Waiting in the outbox (${pending.length})`),
      pending.length
        ? h(
            "table.data",
            {},
            h("thead", {}, h("tr", {}, ["Receiver", "Status", "Alerts", "Queued", "Attempts", "Next attempt", "Last error"].map((t) => h("th", {}, t)))),
            h(
              "tbody",
              {},
              pending.map((p) =>
                h("tr", {}, h("td", {}, p.receiver), h("td", {}, p.status), h("td.num", {}, p.alerts), h("td", {}, ago(p.queued_at)),
                  h("td.num", {}, p.attempts), h("td", {}, time(p.next_attempt)), h("td.bad", {}, p.last_error ?? "")),
              ),
            ),
          )
        : h("p.muted", {}, "Every notification was delivered."),
    ),
    h(
      "div.card",
      {},
      h("h2", { style: "margin-top:0" }, "Notifications in the time range"),
      notifications.length
        ? h(
            "div.scroll",
            {},
            h(
              "table.data",
              { "data-testid": "notifications" },
              h("thead", {}, h("tr", {}, ["Time", "Receiver", "Status", "Outcome", "Attempt", "Code", "Error", "Group"].map((t) => h("th", {}, t)))),
              h(
                "tbody",
                {},
                notifications.map((n) =>
                  h(
                    "tr",
                    {},
                    h("td", {}, time(String(n.time))),
                    h("td", {}, `${n.receiver} (${n.integration})`),
                    h("td", {}, String(n.status)),
                    h("td", {}, h("span.badge", { class: String(n.outcome) }, String(n.outcome))),
                    h("td.num", {}, String(n.attempt)),
                    h("td.num", {}, n.status_code === null ? "–" : String(n.status_code)),
                    h("td.bad", {}, n.error === null ? "" : String(n.error)),
                    h("td.muted", {}, String(n.group_key)),
                  ),
                ),
              ),
            ),
          )
        : note("empty", "No notifications in this time range. Receivers are configured in [notify] (docs/alerting.md)."),
    ),
  );
}
