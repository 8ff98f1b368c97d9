// Command helm-render renders a Helm chart the way `helm template` does, for the subset of
// Helm the kappa-operator chart uses. No Helm binary is packaged where the tests run, but Go,
// sprig v3, ghodss/yaml and gojsonschema are (Debian), and those are what Helm itself renders
// with, so the chart test (operator/tests/chart.rs) checks real template output.
//
// Usage:
//
//	helm-render [-n NAMESPACE] [-f values.yaml]... [--include-crds] [--notes] RELEASE CHART_DIR
//
// What it does, as Helm 3 does: reads Chart.yaml (apiVersion v2) and values.yaml, merges each
// -f file over them (maps merge deeply, a null removes a key), validates the result against
// values.schema.json (JSON Schema, gojsonschema), checks kubeVersion against --kube-version,
// parses every file of templates/ into one template set with sprig's functions plus include,
// tpl, required, lookup (always empty: there is no cluster), toYaml, fromYaml, toJson,
// fromJson, and renders each non-partial template with .Values, .Release, .Chart,
// .Capabilities and .Template. Output: the documents of every template, sorted by Helm's
// install order of kinds, each after `---` and a `# Source:` comment; with --include-crds the
// files of crds/ first, verbatim. With --notes only the rendered NOTES.txt is printed.
//
// Not implemented: subcharts and dependencies, .Files, --set, hooks, post-renderers, the
// library chart type, strict-mode lint.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io/ioutil"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/semver"
	"github.com/Masterminds/sprig"
	"github.com/ghodss/yaml"
	"github.com/xeipuuv/gojsonschema"
)

type valueFiles []string

func (v *valueFiles) String() string     { return strings.Join(*v, ",") }
func (v *valueFiles) Set(s string) error { *v = append(*v, s); return nil }

// Chart is Chart.yaml, with the field names templates use (.Chart.Name, .Chart.AppVersion).
type Chart struct {
	APIVersion  string   `json:"apiVersion"`
	Name        string   `json:"name"`
	Version     string   `json:"version"`
	AppVersion  string   `json:"appVersion"`
	KubeVersion string   `json:"kubeVersion"`
	Description string   `json:"description"`
	Type        string   `json:"type"`
	Keywords    []string `json:"keywords"`
	Sources     []string `json:"sources"`
}

// Release is .Release.
type Release struct {
	Name      string
	Namespace string
	Service   string
	Revision  int
	IsInstall bool
	IsUpgrade bool
}

// KubeVersion is .Capabilities.KubeVersion.
type KubeVersion struct {
	Version    string
	Major      string
	Minor      string
	GitVersion string
}

func (k KubeVersion) String() string { return k.Version }

// VersionSet is .Capabilities.APIVersions.
type VersionSet []string

// Has reports whether an API version ("apps/v1") or a version/kind ("apps/v1/Deployment") is
// available.
func (v VersionSet) Has(apiVersion string) bool {
	for _, x := range v {
		if x == apiVersion {
			return true
		}
	}
	return false
}

// Capabilities is .Capabilities.
type Capabilities struct {
	KubeVersion KubeVersion
	APIVersions VersionSet
}

// defaultAPIVersions are the built-in groups of a recent cluster (Helm's defaults are the
// API versions client-go knows).
var defaultAPIVersions = []string{
	"v1", "apps/v1", "batch/v1", "policy/v1", "autoscaling/v2",
	"rbac.authorization.k8s.io/v1", "networking.k8s.io/v1", "coordination.k8s.io/v1",
	"events.k8s.io/v1", "apiextensions.k8s.io/v1", "admissionregistration.k8s.io/v1",
	"storage.k8s.io/v1", "scheduling.k8s.io/v1", "discovery.k8s.io/v1",
}

// installOrder is Helm's InstallOrder (pkg/releaseutil/kind_sorter.go); unknown kinds last.
var installOrder = []string{
	"PriorityClass", "Namespace", "NetworkPolicy", "ResourceQuota", "LimitRange",
	"PodSecurityPolicy", "PodDisruptionBudget", "ServiceAccount", "Secret", "SecretList",
	"ConfigMap", "StorageClass", "PersistentVolume", "PersistentVolumeClaim",
	"CustomResourceDefinition", "ClusterRole", "ClusterRoleList", "ClusterRoleBinding",
	"ClusterRoleBindingList", "Role", "RoleList", "RoleBinding", "RoleBindingList", "Service",
	"DaemonSet", "Pod", "ReplicationController", "ReplicaSet", "Deployment",
	"HorizontalPodAutoscaler", "StatefulSet", "Job", "CronJob", "IngressClass", "Ingress",
	"APIService",
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "Error: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	namespace := flag.String("n", "default", "release namespace")
	flag.StringVar(namespace, "namespace", "default", "release namespace")
	var files valueFiles
	flag.Var(&files, "f", "values file merged over the chart's values.yaml (repeatable)")
	flag.Var(&files, "values", "same as -f")
	includeCRDs := flag.Bool("include-crds", false, "print the files of crds/ first")
	notes := flag.Bool("notes", false, "print only the rendered NOTES.txt")
	kubeVersion := flag.String("kube-version", "v1.30.0", "Kubernetes version of .Capabilities")
	var apiVersions valueFiles
	flag.Var(&apiVersions, "a", "extra API version of .Capabilities.APIVersions (repeatable)")
	flag.Parse()
	if flag.NArg() != 2 {
		return errors.New("usage: helm-render [flags] RELEASE CHART_DIR")
	}
	release, dir := flag.Arg(0), flag.Arg(1)

	chart, err := loadChart(dir)
	if err != nil {
		return err
	}
	caps, err := capabilities(*kubeVersion, apiVersions)
	if err != nil {
		return err
	}
	if chart.KubeVersion != "" {
		constraint, err := semver.NewConstraint(chart.KubeVersion)
		if err != nil {
			return fmt.Errorf("Chart.yaml kubeVersion %q: %v", chart.KubeVersion, err)
		}
		if !constraint.Check(semver.MustParse(caps.KubeVersion.Version)) {
			return fmt.Errorf("chart requires kubeVersion: %s which is incompatible with Kubernetes %s",
				chart.KubeVersion, caps.KubeVersion.Version)
		}
	}
	values, err := readYAMLMap(filepath.Join(dir, "values.yaml"))
	if err != nil {
		return err
	}
	for _, f := range files {
		override, err := readYAMLMap(f)
		if err != nil {
			return err
		}
		values = merge(values, override)
	}
	if err := validate(dir, values); err != nil {
		return err
	}
	top := map[string]interface{}{
		"Values": values,
		"Release": Release{
			Name: release, Namespace: *namespace, Service: "Helm", Revision: 1, IsInstall: true,
		},
		"Chart":        chart,
		"Capabilities": caps,
	}
	templates, err := parseTemplates(dir, chart.Name)
	if err != nil {
		return err
	}
	if *notes {
		text, err := render(templates, chart.Name+"/templates/NOTES.txt", top)
		if err != nil {
			return err
		}
		fmt.Print(text)
		return nil
	}
	var out bytes.Buffer
	if *includeCRDs {
		if err := writeCRDs(&out, dir, chart.Name); err != nil {
			return err
		}
	}
	docs, err := renderAll(templates, chart.Name, top)
	if err != nil {
		return err
	}
	for _, d := range docs {
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", d.source, d.text)
	}
	_, err = os.Stdout.Write(out.Bytes())
	return err
}

func loadChart(dir string) (Chart, error) {
	var chart Chart
	data, err := ioutil.ReadFile(filepath.Join(dir, "Chart.yaml"))
	if err != nil {
		return chart, err
	}
	if err := yaml.Unmarshal(data, &chart); err != nil {
		return chart, fmt.Errorf("Chart.yaml: %v", err)
	}
	if chart.APIVersion != "v2" || chart.Name == "" || chart.Version == "" {
		return chart, errors.New("Chart.yaml: apiVersion v2, name and version are required")
	}
	if _, err := semver.StrictNewVersion(chart.Version); err != nil {
		return chart, fmt.Errorf("Chart.yaml: version %q is not SemVer 2: %v", chart.Version, err)
	}
	return chart, nil
}

func capabilities(kubeVersion string, extra []string) (Capabilities, error) {
	v, err := semver.NewVersion(kubeVersion)
	if err != nil {
		return Capabilities{}, fmt.Errorf("--kube-version %q: %v", kubeVersion, err)
	}
	version := fmt.Sprintf("v%d.%d.%d", v.Major(), v.Minor(), v.Patch())
	return Capabilities{
		KubeVersion: KubeVersion{
			Version:    version,
			Major:      fmt.Sprint(v.Major()),
			Minor:      fmt.Sprint(v.Minor()),
			GitVersion: version,
		},
		APIVersions: append(append(VersionSet{}, defaultAPIVersions...), extra...),
	}, nil
}

func readYAMLMap(path string) (map[string]interface{}, error) {
	data, err := ioutil.ReadFile(path)
	if err != nil {
		return nil, err
	}
	values := map[string]interface{}{}
	if err := yaml.Unmarshal(data, &values); err != nil {
		return nil, fmt.Errorf("%s: %v", path, err)
	}
	if values == nil {
		values = map[string]interface{}{}
	}
	return values, nil
}

// merge overlays src on dst as Helm coalesces user values over chart values: maps merge
// deeply, other values replace, and a null removes the key.
func merge(dst, src map[string]interface{}) map[string]interface{} {
	for key, value := range src {
		if value == nil {
			delete(dst, key)
			continue
		}
		sub, isMap := value.(map[string]interface{})
		old, wasMap := dst[key].(map[string]interface{})
		if isMap && wasMap {
			dst[key] = merge(old, sub)
		} else {
			dst[key] = value
		}
	}
	return dst
}

// validate checks the merged values against values.schema.json, when the chart has one.
func validate(dir string, values map[string]interface{}) error {
	schema, err := ioutil.ReadFile(filepath.Join(dir, "values.schema.json"))
	if os.IsNotExist(err) {
		return nil
	} else if err != nil {
		return err
	}
	result, err := gojsonschema.Validate(
		gojsonschema.NewBytesLoader(schema), gojsonschema.NewGoLoader(values))
	if err != nil {
		return fmt.Errorf("values.schema.json: %v", err)
	}
	if result.Valid() {
		return nil
	}
	var msg strings.Builder
	msg.WriteString("values don't meet the specifications of the schema(s) in the following chart(s):\n")
	for _, e := range result.Errors() {
		fmt.Fprintf(&msg, "- %s\n", e)
	}
	return errors.New(strings.TrimSuffix(msg.String(), "\n"))
}

// parseTemplates parses every file of templates/ into one set named <chart>/templates/<file>.
func parseTemplates(dir, chartName string) (*template.Template, error) {
	root := template.New("gotpl").Option("missingkey=zero")
	funcs := funcMap(root)
	root.Funcs(funcs)
	base := filepath.Join(dir, "templates")
	err := filepath.Walk(base, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(base, path)
		data, err := ioutil.ReadFile(path)
		if err != nil {
			return err
		}
		name := chartName + "/templates/" + filepath.ToSlash(rel)
		if _, err := root.New(name).Parse(string(data)); err != nil {
			return fmt.Errorf("parse error in %s", strings.TrimPrefix(err.Error(), "template: "))
		}
		return nil
	})
	return root, err
}

const recursionLimit = 1000

// funcMap is sprig's text functions as Helm exposes them (env and expandenv removed) plus
// Helm's own.
func funcMap(root *template.Template) template.FuncMap {
	f := sprig.TxtFuncMap()
	delete(f, "env")
	delete(f, "expandenv")
	depth := map[string]int{}
	f["include"] = func(name string, data interface{}) (string, error) {
		if depth[name] > recursionLimit {
			return "", fmt.Errorf("rendering template has a nested reference name: %s", name)
		}
		depth[name]++
		defer func() { depth[name]-- }()
		var buf strings.Builder
		if err := root.ExecuteTemplate(&buf, name, data); err != nil {
			return "", err
		}
		return buf.String(), nil
	}
	f["tpl"] = func(text string, data interface{}) (string, error) {
		t, err := root.Clone()
		if err != nil {
			return "", err
		}
		t, err = t.New("tpl").Parse(text)
		if err != nil {
			return "", fmt.Errorf("cannot parse template %q: %v", text, err)
		}
		var buf strings.Builder
		if err := t.Execute(&buf, data); err != nil {
			return "", err
		}
		return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
	}
	f["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return v, errors.New(msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return v, errors.New(msg)
		}
		return v, nil
	}
	f["lookup"] = func(apiVersion, kind, namespace, name string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	f["toYaml"] = func(v interface{}) string {
		data, err := yaml.Marshal(v)
		if err != nil {
			return ""
		}
		return strings.TrimSuffix(string(data), "\n")
	}
	f["fromYaml"] = func(text string) map[string]interface{} {
		m := map[string]interface{}{}
		if err := yaml.Unmarshal([]byte(text), &m); err != nil {
			m["Error"] = err.Error()
		}
		return m
	}
	f["fromJson"] = f["fromYaml"]
	return f
}

func render(t *template.Template, name string, data map[string]interface{}) (string, error) {
	var buf strings.Builder
	data["Template"] = map[string]string{
		"Name": name, "BasePath": name[:strings.LastIndex(name, "/")],
	}
	if err := t.ExecuteTemplate(&buf, name, data); err != nil {
		return "", err
	}
	return strings.ReplaceAll(buf.String(), "<no value>", ""), nil
}

type document struct {
	source string
	kind   string
	text   string
}

var separator = regexp.MustCompile(`(?m)^---[ \t]*(#.*)?$`)

// renderAll renders every template that is not a partial (_*) or NOTES.txt and splits the
// output into documents, as Helm's SplitManifests does.
func renderAll(t *template.Template, chartName string, top map[string]interface{}) ([]document, error) {
	var names []string
	for _, tt := range t.Templates() {
		name := tt.Name()
		base := filepath.Base(name)
		if !strings.HasPrefix(name, chartName+"/templates/") || strings.HasPrefix(base, "_") ||
			base == "NOTES.txt" {
			continue
		}
		names = append(names, name)
	}
	sort.Strings(names)
	var docs []document
	for _, name := range names {
		text, err := render(t, name, top)
		if err != nil {
			return nil, err
		}
		for _, part := range separator.Split(text, -1) {
			part = strings.TrimSpace(part)
			if part == "" || strings.TrimSpace(stripComments(part)) == "" {
				continue
			}
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal([]byte(part), &head); err != nil {
				return nil, fmt.Errorf("YAML parse error on %s: %v", name, err)
			}
			if head.APIVersion == "" || head.Kind == "" {
				return nil, fmt.Errorf("%s: a document without apiVersion or kind:\n%s", name, part)
			}
			docs = append(docs, document{source: name, kind: head.Kind, text: part})
		}
	}
	sort.SliceStable(docs, func(i, j int) bool { return rank(docs[i].kind) < rank(docs[j].kind) })
	return docs, nil
}

func stripComments(text string) string {
	var kept []string
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(line), "#") {
			kept = append(kept, line)
		}
	}
	return strings.Join(kept, "\n")
}

func rank(kind string) int {
	for i, k := range installOrder {
		if k == kind {
			return i
		}
	}
	return len(installOrder)
}

// writeCRDs prints the files of crds/ verbatim, as `helm template --include-crds` does.
func writeCRDs(out *bytes.Buffer, dir, chartName string) error {
	paths, err := filepath.Glob(filepath.Join(dir, "crds", "*"))
	if err != nil {
		return err
	}
	sort.Strings(paths)
	for _, path := range paths {
		ext := filepath.Ext(path)
		if ext != ".yaml" && ext != ".yml" && ext != ".json" {
			continue
		}
		data, err := ioutil.ReadFile(path)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "---\n# Source: %s/crds/%s\n%s", chartName, filepath.Base(path), data)
		if !bytes.HasSuffix(data, []byte("\n")) {
			out.WriteString("\n")
		}
	}
	return nil
}
