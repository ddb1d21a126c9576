package console

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"time"
)

// cookieName is the session cookie: its value is the only credential the
// browser holds.
const cookieName = "dcaas_console"

type session struct {
	csrf    string
	expires time.Time
	flash   string // what the last change did, shown once (guarded by Console.mu)
}

func digest(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// routes registers every page behind the session check; /login alone
// answers without one.
func (c *Console) routes() {
	m := http.NewServeMux()
	m.HandleFunc("GET /login", c.handleLogin)
	page := func(pattern string, h func(w http.ResponseWriter, r *http.Request, s *session)) {
		m.Handle(pattern, c.authed(h))
	}
	page("GET /{$}", c.pageTenants)
	page("GET /static/console.css", serveCSS)
	page("GET /tenants/{tenant}", c.pageTenant)
	page("GET /tenants/{tenant}/keys", c.pageKeys)
	page("GET /fleet", c.pageFleet)
	page("GET /audit", c.pageAudit)
	page("GET /metrics", c.pageMetrics)
	page("GET /metrics/{chart}", c.chartSVG)
	// Confirmation pages (GET) and the changes they confirm (POST).
	page("GET /confirm/{action}", c.pageConfirm)
	page("POST /tenants/{tenant}/rotate", c.csrf(c.doRotateTenant))
	page("POST /keys/{key}/disable", c.csrf(c.doDisableKey))
	page("POST /keys/{key}/retire", c.csrf(c.doRetireVersions))
	page("POST /keys/{key}/rotate", c.csrf(c.doRotateKey))
	page("POST /instances/{id}/revoke", c.csrf(c.doRevokeInstance))
	page("POST /logout", c.csrf(c.doLogout))
	m.Handle("/", c.authed(func(w http.ResponseWriter, r *http.Request, _ *session) {
		c.fail(w, r, http.StatusNotFound, "There is no such page.")
	}))
	c.mux = m
}

// Handler serves the console. Every answer forbids framing, caching and
// loading anything from elsewhere; cross-origin state-changing requests
// are refused (Sec-Fetch-Site / Origin) before the CSRF token is checked.
func (c *Console) Handler() http.Handler {
	cop := http.NewCrossOriginProtection()
	h := cop.Handler(c.mux)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Cache-Control", "no-store")
		h.ServeHTTP(w, r)
	})
}

// handleLogin trades the one-time token for a session.
func (c *Console) handleLogin(w http.ResponseWriter, r *http.Request) {
	token := r.URL.Query().Get("token")
	c.mu.Lock()
	ok := token != "" && c.login != nil && subtle.ConstantTimeCompare(digest(token), c.login) == 1
	if ok {
		c.login = nil // one time
	}
	c.mu.Unlock()
	if !ok {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusUnauthorized)
		c.render(w, "login", &view{Title: "Log in"})
		return
	}
	value, err := c.randomToken()
	if err != nil {
		c.fail(w, r, http.StatusInternalServerError, "No session could be made.")
		return
	}
	csrf, err := c.randomToken()
	if err != nil {
		c.fail(w, r, http.StatusInternalServerError, "No session could be made.")
		return
	}
	exp := c.cfg.Now().Add(c.cfg.SessionTTL)
	c.mu.Lock()
	c.sessions[string(digest(value))] = &session{csrf: csrf, expires: exp}
	c.mu.Unlock()
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: value, Path: "/", Expires: exp,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: c.cfg.TLS,
	})
	c.log.Info("console session started", "remote", r.RemoteAddr)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// sessionOf returns the live session r's cookie names, or nil.
func (c *Console) sessionOf(r *http.Request) *session {
	ck, err := r.Cookie(cookieName)
	if err != nil || ck.Value == "" {
		return nil
	}
	key := string(digest(ck.Value))
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.sessions[key]
	if s != nil && !c.cfg.Now().Before(s.expires) {
		delete(c.sessions, key)
		return nil
	}
	return s
}

// authed answers a request without a session: a page read is sent to the
// login page (302), anything else gets 401.
func (c *Console) authed(h func(w http.ResponseWriter, r *http.Request, s *session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := c.sessionOf(r)
		if s == nil {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				http.Redirect(w, r, "/login", http.StatusFound)
				return
			}
			c.fail(w, r, http.StatusUnauthorized, "There is no session: open the login URL the console printed.")
			return
		}
		h(w, r, s)
	})
}

// csrf refuses a state-changing request whose form does not carry the
// session's CSRF token (403).
func (c *Console) csrf(h func(w http.ResponseWriter, r *http.Request, s *session)) func(w http.ResponseWriter, r *http.Request, s *session) {
	return func(w http.ResponseWriter, r *http.Request, s *session) {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		got := r.PostFormValue("csrf")
		if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(s.csrf)) != 1 {
			c.fail(w, r, http.StatusForbidden, "The form's CSRF token is missing or wrong: reload the page and try again.")
			return
		}
		h(w, r, s)
	}
}

func (c *Console) doLogout(w http.ResponseWriter, r *http.Request, _ *session) {
	if ck, err := r.Cookie(cookieName); err == nil {
		c.mu.Lock()
		delete(c.sessions, string(digest(ck.Value)))
		c.mu.Unlock()
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: c.cfg.TLS})
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}
