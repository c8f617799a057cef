// Reference renderer for tests/export: executes templates with Go's own text/template, the way
// Ollama's template.Execute does for a chat request (ollama/ollama template/template.go: the
// template is parsed with missingkey=zero and the "json" function; .System is every system
// message joined with "\n\n"; .Messages collates consecutive messages of one role with "\n\n";
// .Response is ""). Reads a JSON array of cases on stdin, writes a JSON array of
// {"out", "err"}: a case is {"template", "messages"} (Ollama mode) or {"template", "data"}.
package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"text/template"
)

type ToolCall struct{}

type Message struct {
	Role      string
	Content   string
	Thinking  string
	Images    []string
	ToolCalls []ToolCall
	ToolName  string
}

type Case struct {
	Template string                 `json:"template"`
	Messages []map[string]string    `json:"messages"`
	Data     map[string]interface{} `json:"data"`
}

type Result struct {
	Out string `json:"out"`
	Err string `json:"err"`
}

func collate(msgs []map[string]string) (string, []*Message) {
	var system []string
	var collated []*Message
	for _, m := range msgs {
		if m["role"] == "system" {
			system = append(system, m["content"])
		}
		if len(collated) > 0 && collated[len(collated)-1].Role == m["role"] {
			collated[len(collated)-1].Content += "\n\n" + m["content"]
		} else {
			collated = append(collated, &Message{Role: m["role"], Content: m["content"]})
		}
	}
	return strings.Join(system, "\n\n"), collated
}

func run(c Case) Result {
	funcs := template.FuncMap{"json": func(v any) string { b, _ := json.Marshal(v); return string(b) }}
	tmpl, err := template.New("").Option("missingkey=zero").Funcs(funcs).Parse(c.Template)
	if err != nil {
		return Result{Err: err.Error()}
	}
	var data any = c.Data
	if c.Messages != nil {
		system, messages := collate(c.Messages)
		data = map[string]any{"System": system, "Messages": messages, "Tools": []any{}, "Response": ""}
	}
	var b bytes.Buffer
	if err := tmpl.Execute(&b, data); err != nil {
		return Result{Err: err.Error()}
	}
	return Result{Out: b.String()}
}

func main() {
	var cases []Case
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		panic(err)
	}
	results := make([]Result, len(cases))
	for i, c := range cases {
		results[i] = run(c)
	}
	json.NewEncoder(os.Stdout).Encode(results)
}
