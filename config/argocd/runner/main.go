// argocd-lua-health runs an Argo CD resource health script the way the
// application controller runs one taken from argocd-cm
// (resource.customizations.health.<group>_<kind>, useOpenLibs unset):
//
//   - gopher-lua with SkipOpenLibs, then only the package, base and table
//     libraries opened, each through a protected call;
//   - Argo's "safe os" subset: time and date, registered under the table
//     module's name (so they appear as table.time/table.date) and preloaded
//     as the module "os" (local os = require("os")); the global os is nil;
//   - string, math, io, coroutine, debug and channel are nil;
//   - a one-second deadline on the script;
//   - the object as the global obj, converted as Argo's decodeValue does:
//     maps to hash tables, lists to array tables, integers (int64, as an
//     unstructured object holds them) and floats to numbers;
//   - the returned table encoded to JSON with layeh.com/gopher-json and
//     decoded into {status, message}; an unknown status becomes Unknown with
//     Argo's message, a non-table result is an error.
//
// Usage: argocd-lua-health SCRIPT.lua OBJECT.(yaml|json)
// Prints {"status":"...","message":"..."} on stdout; exits 1 on a script
// error (the error on stderr), 2 on bad usage or input.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	lua "github.com/yuin/gopher-lua"
	luajson "layeh.com/gopher-json"
	"sigs.k8s.io/yaml"
)

type health struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
}

var validStatus = map[string]bool{
	"Unknown": true, "Progressing": true, "Suspended": true,
	"Healthy": true, "Degraded": true, "Missing": true,
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: argocd-lua-health SCRIPT.lua OBJECT.(yaml|json)")
		os.Exit(2)
	}
	script, err := os.ReadFile(os.Args[1])
	if err != nil {
		fail(2, err)
	}
	obj, err := readObject(os.Args[2])
	if err != nil {
		fail(2, err)
	}
	h, err := run(obj, string(script))
	if err != nil {
		fail(1, err)
	}
	out, _ := json.Marshal(h)
	fmt.Println(string(out))
}

func fail(code int, err error) {
	fmt.Fprintln(os.Stderr, "argocd-lua-health:", err)
	os.Exit(code)
}

// readObject reads one YAML or JSON object and holds its numbers as an
// unstructured.Unstructured does: int64 where the number is an integer,
// float64 otherwise.
func readObject(path string) (map[string]interface{}, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	js, err := yaml.YAMLToJSON(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	var v interface{}
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	m, ok := numbers(v).(map[string]interface{})
	if !ok {
		return nil, fmt.Errorf("%s: not an object", path)
	}
	return m, nil
}

func numbers(v interface{}) interface{} {
	switch t := v.(type) {
	case json.Number:
		if i, err := t.Int64(); err == nil {
			return i
		}
		f, _ := t.Float64()
		return f
	case []interface{}:
		for i := range t {
			t[i] = numbers(t[i])
		}
	case map[string]interface{}:
		for k := range t {
			t[k] = numbers(t[k])
		}
	}
	return v
}

func run(obj map[string]interface{}, script string) (*health, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer l.Close()
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(lib.open), NRet: 0, Protect: true},
			lua.LString(lib.name)); err != nil {
			return nil, err
		}
	}
	safeOs(l)

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	if err := l.DoString(script); err != nil {
		return nil, err
	}
	ret := l.Get(-1)
	if ret.Type() != lua.LTTable {
		return nil, fmt.Errorf("expect table output from Lua script, not %s", ret.Type().String())
	}
	js, err := luajson.Encode(ret)
	if err != nil {
		return nil, err
	}
	h := &health{}
	if err := json.Unmarshal(js, h); err != nil {
		return nil, err
	}
	if !validStatus[h.Status] {
		return &health{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
	}
	return h, nil
}

// safeOs installs Argo's os subset. The time and date functions are
// gopher-lua's own (Argo's copies of them behave the same); the rest of the
// os library is removed again.
func safeOs(l *lua.LState) {
	l.Push(l.NewFunction(lua.OpenOs))
	l.Push(lua.LString(lua.OsLibName))
	l.Call(1, 0)
	full := l.GetGlobal(lua.OsLibName).(*lua.LTable)
	funcs := map[string]lua.LValue{
		"time": full.RawGetString("time"),
		"date": full.RawGetString("date"),
	}
	l.SetGlobal(lua.OsLibName, lua.LNil)
	loaded := l.GetField(l.Get(lua.RegistryIndex), "_LOADED").(*lua.LTable)
	loaded.RawSetString(lua.OsLibName, lua.LNil)
	// Argo registers the subset under the table library's name.
	tab := l.GetGlobal(lua.TabLibName).(*lua.LTable)
	for k, f := range funcs {
		tab.RawSetString(k, f)
	}
	l.PreloadModule(lua.OsLibName, func(l *lua.LState) int {
		mod := l.NewTable()
		for k, f := range funcs {
			mod.RawSetString(k, f)
		}
		l.Push(mod)
		return 1
	})
}

// toLua converts a decoded object as Argo's decodeValue does.
func toLua(l *lua.LState, v interface{}) lua.LValue {
	switch t := v.(type) {
	case bool:
		return lua.LBool(t)
	case float64:
		return lua.LNumber(t)
	case int64:
		return lua.LNumber(t)
	case string:
		return lua.LString(t)
	case json.Number:
		return lua.LString(t)
	case []interface{}:
		arr := l.CreateTable(len(t), 0)
		for _, item := range t {
			arr.Append(toLua(l, item))
		}
		return arr
	case map[string]interface{}:
		tbl := l.CreateTable(0, len(t))
		for k, item := range t {
			tbl.RawSetH(lua.LString(k), toLua(l, item))
		}
		return tbl
	}
	return lua.LNil
}
