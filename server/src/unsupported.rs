//! OpenAI request fields this server does not implement: a request that asks for one of them
//! gets a 400 naming it, instead of an answer that silently ignores it. The no-op values
//! clients send by default (`frequency_penalty: 0`, `tools: []`,
//! `response_format: {"type": "text"}`, …) are accepted. Fields this module does not know
//! are ignored, as before.

use serde_json::Value;

use super::error::ApiError;
use super::types::ChatCompletionRequest;

/// The fields refused when they ask for something, in the order they are checked.
pub const REFUSED_FIELDS: [&str; 8] = [
    "response_format",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "tools",
    "tool_choice",
    "functions",
    "function_call",
];

/// Refuses (400, `param` set) a request that asks for something the server does not do:
/// a `response_format` other than `{"type": "text"}`, a non-zero
/// `frequency_penalty` or `presence_penalty`, a
/// non-empty `logit_bias`, non-empty `tools` or `functions`, or a `tool_choice` or
/// `function_call` other than `"none"` or `"auto"`. A value of the wrong type is a 400 too.
pub fn refuse_unsupported(req: &ChatCompletionRequest) -> Result<(), ApiError> {
    response_format(req.response_format.as_ref())?;
    zero_number("frequency_penalty", req.frequency_penalty.as_ref())?;
    zero_number("presence_penalty", req.presence_penalty.as_ref())?;
    match given(req.logit_bias.as_ref()) {
        None => {}
        Some(Value::Object(m)) if m.is_empty() => {}
        Some(Value::Object(_)) => return Err(unsupported("logit_bias", "`logit_bias`")),
        Some(_) => return Err(wrong_type("logit_bias", "an object")),
    }
    let calling = [
        ("tools", &req.tools, "tool_choice", &req.tool_choice),
        (
            "functions",
            &req.functions,
            "function_call",
            &req.function_call,
        ),
    ];
    for (field, list, choice, pick) in calling {
        match given(list.as_ref()) {
            None => {}
            Some(Value::Array(a)) if a.is_empty() => {}
            Some(Value::Array(_)) => {
                return Err(unsupported(
                    field,
                    "function calling (`tools`, `functions`)",
                ))
            }
            Some(_) => return Err(wrong_type(field, "an array")),
        }
        match given(pick.as_ref()) {
            None => {}
            Some(Value::String(s)) if s == "none" || s == "auto" => {}
            Some(_) => {
                return Err(unsupported(
                    choice,
                    &format!("function calling (`{choice}` other than \"none\" or \"auto\")"),
                ))
            }
        }
    }
    Ok(())
}

/// The value unless it is absent or null.
fn given(v: Option<&Value>) -> Option<&Value> {
    v.filter(|v| !v.is_null())
}

fn unsupported(param: &str, what: &str) -> ApiError {
    ApiError::bad_request(format!("{what} is not supported by this server"))
        .with_param(param)
        .with_code("unsupported_parameter")
}

fn wrong_type(param: &str, want: &str) -> ApiError {
    ApiError::bad_request(format!("`{param}` must be {want}")).with_param(param)
}

/// `response_format`: absent, null or `{"type": "text"}`.
fn response_format(v: Option<&Value>) -> Result<(), ApiError> {
    let Some(v) = given(v) else { return Ok(()) };
    let Value::Object(m) = v else {
        return Err(wrong_type("response_format", "an object"));
    };
    match m.get("type") {
        Some(Value::String(t)) if t == "text" => Ok(()),
        Some(Value::String(t)) => Err(unsupported(
            "response_format",
            &format!("`response_format` of type `{t}` (only \"text\")"),
        )),
        _ => Err(wrong_type(
            "response_format",
            "an object with a string `type`",
        )),
    }
}

/// A number field that only its no-op value 0 (or absent, or null) may take.
fn zero_number(param: &str, v: Option<&Value>) -> Result<(), ApiError> {
    match given(v) {
        None => Ok(()),
        Some(Value::Number(n)) if n.as_f64() == Some(0.0) => Ok(()),
        Some(Value::Number(_)) => Err(unsupported(param, &format!("a non-zero `{param}`"))),
        Some(_) => Err(wrong_type(param, "a number")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(extra: Value) -> Result<(), ApiError> {
        let mut body = json!({"messages": [{"role": "user", "content": "hi"}]});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let req: ChatCompletionRequest = serde_json::from_value(body).unwrap();
        refuse_unsupported(&req)
    }

    #[test]
    fn no_op_defaults_pass() {
        check(json!({})).unwrap();
        check(json!({
            "n": 1, "response_format": {"type": "text"}, "frequency_penalty": 0,
            "presence_penalty": 0.0, "logprobs": false, "top_logprobs": 0, "logit_bias": {},
            "tools": [], "tool_choice": "none", "functions": [], "function_call": "auto",
            "parallel_tool_calls": true, "user": "me", "store": false, "metadata": {"a": "b"},
            "some_future_field": [1, 2]
        }))
        .unwrap();
        check(json!({
            "response_format": null, "frequency_penalty": null, "presence_penalty": null,
            "logprobs": null, "top_logprobs": null, "logit_bias": null, "tools": null,
            "tool_choice": null, "functions": null, "function_call": null
        }))
        .unwrap();
    }

    #[test]
    fn requests_for_unimplemented_features_are_refused_by_name() {
        let tool = json!([{"type": "function", "function": {"name": "f"}}]);
        for (extra, param) in [
            (
                json!({"response_format": {"type": "json_object"}}),
                "response_format",
            ),
            (
                json!({"response_format": {"type": "json_schema", "json_schema": {}}}),
                "response_format",
            ),
            (json!({"response_format": "text"}), "response_format"),
            (json!({"response_format": {}}), "response_format"),
            (json!({"frequency_penalty": 0.5}), "frequency_penalty"),
            (json!({"frequency_penalty": "0"}), "frequency_penalty"),
            (json!({"presence_penalty": -1}), "presence_penalty"),
            (json!({"logit_bias": {"42": 100}}), "logit_bias"),
            (json!({"logit_bias": []}), "logit_bias"),
            (json!({"tools": tool.clone()}), "tools"),
            (json!({"tools": {}}), "tools"),
            (json!({"tool_choice": "required"}), "tool_choice"),
            (
                json!({"tool_choice": {"type": "function", "function": {"name": "f"}}}),
                "tool_choice",
            ),
            (json!({"functions": [{"name": "f"}]}), "functions"),
            (json!({"function_call": {"name": "f"}}), "function_call"),
        ] {
            let e = check(extra.clone()).unwrap_err();
            assert_eq!(e.status.as_u16(), 400, "{extra}");
            assert_eq!(e.param.as_deref(), Some(param), "{extra}");
            assert!(REFUSED_FIELDS.contains(&param));
        }
    }
}
