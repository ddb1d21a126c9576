package console

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/dcaas/dcaas/api"
)

//go:embed templates/*.html static/console.css
var files embed.FS

var pageNames = []string{"login", "error", "tenants", "tenant", "keys", "fleet", "audit", "metrics", "confirm"}

func parseTemplates() (map[string]*template.Template, error) {
	funcs := template.FuncMap{
		"ts":  func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05Z") },
		"tsp": func(t *time.Time) string { return fmtTimePtr(t) },
		"pct": func(n, limit int64) string {
			if limit <= 0 {
				return ""
			}
			return strconv.FormatFloat(100*float64(n)/float64(limit), 'f', 2, 64) + "%"
		},
		"seconds": func(s int64) string { return (time.Duration(s) * time.Second).String() },
	}
	out := map[string]*template.Template{}
	for _, name := range pageNames {
		t, err := template.New(name).Funcs(funcs).ParseFS(files, "templates/layout.html", "templates/"+name+".html")
		if err != nil {
			return nil, fmt.Errorf("console: template %s: %w", name, err)
		}
		out[name] = t
	}
	return out, nil
}

func fmtTimePtr(t *time.Time) string {
	if t == nil {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05Z")
}

func serveCSS(w http.ResponseWriter, _ *http.Request, _ *session) {
	b, _ := files.ReadFile("static/console.css")
	w.Header().Set("Content-Type", "text/css; charset=utf-8")
	_, _ = w.Write(b)
}

// view is what every page's template gets.
type view struct {
	Title string
	Nav   string
	CSRF  string
	Done  string // what the last change did
	Error string
	Data  any
}

func (c *Console) render(w http.ResponseWriter, name string, v *view) {
	if w.Header().Get("Content-Type") == "" {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
	}
	if err := c.tmpl[name].ExecuteTemplate(w, "layout", v); err != nil {
		c.log.Error("console: rendering a page failed", "page", name, "err", err)
	}
}

func (c *Console) show(w http.ResponseWriter, r *http.Request, s *session, name, title string, data any, err error) {
	c.mu.Lock()
	done := s.flash
	s.flash = ""
	c.mu.Unlock()
	v := &view{Title: title, Nav: name, CSRF: s.csrf, Done: done, Data: data}
	if err != nil {
		v.Error = err.Error()
	}
	c.render(w, name, v)
}

// fail answers with an error page (text, escaped).
func (c *Console) fail(w http.ResponseWriter, _ *http.Request, status int, msg string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	c.render(w, "error", &view{Title: http.StatusText(status), Error: msg})
}

func (c *Console) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), 15*time.Second)
}

func (c *Console) pageTenants(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	list, err := c.kms.ListTenants(ctx)
	c.show(w, r, s, "tenants", "Tenants", list, err)
}

type appRow struct {
	App   api.AppInfo
	Certs []api.AppCertificate
	Err   string
}

func (c *Console) pageTenant(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	tenant := r.PathValue("tenant")
	apps, err := c.kms.ListApps(ctx, tenant)
	rows := make([]appRow, 0, len(apps))
	for _, a := range apps {
		row := appRow{App: a}
		if row.Certs, err = c.kms.Certificates(ctx, tenant, a.Name); err != nil {
			row.Err = err.Error()
			err = nil
		}
		rows = append(rows, row)
	}
	c.show(w, r, s, "tenant", "Tenant "+tenant, struct {
		Tenant string
		Apps   []appRow
		Now    time.Time
	}{tenant, rows, c.cfg.Now()}, err)
}

// keyRow is one data key: its registry entry and, when the KMS could
// read it, its current metadata.
type keyRow struct {
	api.DataKeyInfo
	Meta *api.KeyMetadata
}

func (c *Console) pageKeys(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	tenant := r.PathValue("tenant")
	list, err := c.kms.ListDataKeys(ctx, tenant)
	var rows []keyRow
	if err == nil {
		for _, k := range list.Keys {
			row := keyRow{DataKeyInfo: k}
			if md, ok := list.Metadata[k.KeyID]; ok {
				row.Meta = &md
			}
			rows = append(rows, row)
		}
	}
	c.show(w, r, s, "keys", "Data keys of "+tenant, struct {
		Tenant string
		Keys   []keyRow
	}{tenant, rows}, err)
}

type fleetRow struct {
	api.FleetInstance
	LeaseUntil *time.Time
	CertSoon   bool // the certificate expires within a day
}

type custodianGroup struct {
	Tenant, Custodian string
	Instances         []fleetRow
}

func (c *Console) pageFleet(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	now := c.cfg.Now()
	var groups []custodianGroup
	err := func() error {
		tenants, err := c.kms.ListTenants(ctx)
		if err != nil {
			return err
		}
		byKey := map[string]int{}
		for _, t := range tenants {
			list, err := c.kms.Fleet(ctx, t.Name)
			if err != nil {
				return err
			}
			for _, in := range list {
				row := fleetRow{FleetInstance: in}
				if in.LastPollAt != nil {
					until := in.LastPollAt.Add(c.cfg.Lease)
					row.LeaseUntil = &until
				}
				row.CertSoon = in.CertNotAfter != nil && in.CertNotAfter.Sub(now) < 24*time.Hour
				k := t.Name + "\x00" + in.CustodianDN
				i, ok := byKey[k]
				if !ok {
					i = len(groups)
					byKey[k] = i
					groups = append(groups, custodianGroup{Tenant: t.Name, Custodian: in.CustodianDN})
				}
				groups[i].Instances = append(groups[i].Instances, row)
			}
		}
		return nil
	}()
	c.show(w, r, s, "fleet", "Fleet", struct {
		Groups []custodianGroup
		Lease  time.Duration
	}{groups, c.cfg.Lease}, err)
}

func (c *Console) pageAudit(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	q := r.URL.Query()
	flt := auditFilter{Actor: q.Get("actor"), Action: q.Get("action"), Key: q.Get("key")}
	ver, err := c.audit.follow(ctx, c.cfg.Now())
	recs, total := c.audit.match(flt, 200)
	c.show(w, r, s, "audit", "Audit trail", map[string]any{
		"Filter": flt, "Records": recs, "Total": total, "Window": keepRecords, "Verify": ver,
	}, err)
}

func (c *Console) pageMetrics(w http.ResponseWriter, r *http.Request, s *session) {
	c.samples.mu.Lock()
	var last sample
	n := len(c.samples.list)
	if n > 0 {
		last = c.samples.list[n-1]
	}
	problem := c.samples.err
	c.samples.mu.Unlock()
	c.show(w, r, s, "metrics", "Metrics", map[string]any{
		"Charts": []string{"requests", "errors", "released"}, "Last": last, "Samples": n,
		"Every": c.cfg.SampleEvery, "Problem": problem, "Stamp": strconv.FormatInt(c.cfg.Now().UnixNano(), 36),
	}, nil)
}

// confirmation is one change a confirmation page asks about.
type confirmation struct {
	Question string
	Detail   string
	Action   string // the form's URL
	Fields   map[string]string
	Back     string
}

func (c *Console) pageConfirm(w http.ResponseWriter, r *http.Request, s *session) {
	q := r.URL.Query()
	var cf confirmation
	switch r.PathValue("action") {
	case "rotate":
		t := q.Get("tenant")
		cf = confirmation{"Rotate the master key of tenant " + t + "?",
			"A new master key version becomes current: new EKBs are sealed under it; EKBs under older versions still open.",
			"/tenants/" + url.PathEscape(t) + "/rotate", nil, "/"}
	case "disable":
		k, t := q.Get("key"), q.Get("tenant")
		cf = confirmation{"Disable key " + k + "?",
			"The KMS stops releasing it and every sidecar evicts it at its next poll. This cannot be undone.",
			"/keys/" + url.PathEscape(k) + "/disable", map[string]string{"tenant": t}, "/tenants/" + url.PathEscape(t) + "/keys"}
	case "rotate-key":
		k, t := q.Get("key"), q.Get("tenant")
		cf = confirmation{"Rotate key " + k + "?",
			"The KMS makes a new version from the EKB it retains; it becomes current for new ciphertexts, older versions still decrypt, and sidecars receive it at their next refresh.",
			"/keys/" + url.PathEscape(k) + "/rotate", map[string]string{"tenant": t}, "/tenants/" + url.PathEscape(t) + "/keys"}
	case "retire":
		k, t, v := q.Get("key"), q.Get("tenant"), q.Get("version")
		cf = confirmation{"Retire the versions of key " + k + " below version " + v + "?",
			"They no longer decrypt or release anywhere; sidecars evict them at their next poll. Retired versions stay retired.",
			"/keys/" + url.PathEscape(k) + "/retire", map[string]string{"tenant": t, "version": v}, "/tenants/" + url.PathEscape(t) + "/keys"}
	case "revoke":
		id := q.Get("id")
		cf = confirmation{"Revoke sidecar instance " + id + "?",
			"Its certificates stop working at once; at its next poll the sidecar wipes every key and refuses every call. This cannot be undone.",
			"/instances/" + url.PathEscape(id) + "/revoke", nil, "/fleet"}
	default:
		c.fail(w, r, http.StatusNotFound, "There is no such action.")
		return
	}
	c.show(w, r, s, "confirm", "Confirm", cf, nil)
}

// kmsStatus is the status the console answers a change the KMS did not
// make with: the KMS's own for a refusal of the request (400, 403, 404,
// 409: the person can act on it), 502 when the KMS failed, could not be
// reached, or refused the console's own credential (401).
func kmsStatus(err error) int {
	if e := (*api.Error)(nil); errors.As(err, &e) && e.Status >= 400 && e.Status < 500 && e.Status != http.StatusUnauthorized {
		return e.Status
	}
	return http.StatusBadGateway
}

// done redirects to page, which then says what the change did (once), or
// shows the change's error.
func (c *Console) done(w http.ResponseWriter, r *http.Request, s *session, page, msg string, err error) {
	if err != nil {
		c.fail(w, r, kmsStatus(err), "The KMS refused: "+err.Error())
		return
	}
	c.mu.Lock()
	s.flash = msg
	c.mu.Unlock()
	http.Redirect(w, r, page, http.StatusSeeOther)
}

func (c *Console) doRotateTenant(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	t := r.PathValue("tenant")
	v, err := c.kms.RotateMasterKey(ctx, t)
	c.done(w, r, s, "/", fmt.Sprintf("Tenant %s: master key version %d is current.", t, v), err)
}

func (c *Console) doDisableKey(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	k := r.PathValue("key")
	err := c.kms.DisableKey(ctx, k)
	c.done(w, r, s, "/tenants/"+url.PathEscape(r.PostFormValue("tenant"))+"/keys", "Key "+k+" is disabled.", err)
}

func (c *Console) doRotateKey(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	k := r.PathValue("key")
	dk, err := c.kms.RotateDataKey(ctx, k)
	msg := ""
	if err == nil {
		msg = fmt.Sprintf("Key %s: version %d is current.", k, dk.Version)
	}
	c.done(w, r, s, "/tenants/"+url.PathEscape(r.PostFormValue("tenant"))+"/keys", msg, err)
}

func (c *Console) doRetireVersions(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	k := r.PathValue("key")
	v, err := strconv.Atoi(r.PostFormValue("version"))
	if err != nil {
		c.fail(w, r, http.StatusBadRequest, "The version must be a number.")
		return
	}
	_, err = c.kms.RetireKeyVersions(ctx, k, v)
	c.done(w, r, s, "/tenants/"+url.PathEscape(r.PostFormValue("tenant"))+"/keys", fmt.Sprintf("Key %s: versions below %d are retired.", k, v), err)
}

func (c *Console) doRevokeInstance(w http.ResponseWriter, r *http.Request, s *session) {
	ctx, cancel := c.ctx(r)
	defer cancel()
	id := r.PathValue("id")
	err := c.kms.RevokeInstance(ctx, id)
	c.done(w, r, s, "/fleet", "Instance "+id+" is revoked.", err)
}
