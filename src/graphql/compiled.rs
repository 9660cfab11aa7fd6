//! Compiled `uploadStatus` queries. Hand-written because a benchmark needed it: `bench_status`
//! went from 9,303 to 10,931 requests/s with them (server CPU 124 → 89 µs per request).
//!
//! The web app polls one status query over and over, and async-graphql's executor spends most
//! of such a request on its own machinery (a future, an index map and a value per field, a
//! registry lookup per object) rather than on the answer.
//! A document whose only operation is an `uploadStatus` query over fields this module knows is
//! compiled once, when it is parsed, into a [`StatusPlan`]: the fields to write, by response
//! key, and where each argument comes from. Answering is then one service call and the JSON
//! written straight from the rows.
//!
//! A plan only answers what async-graphql would answer the same way:
//! - it is used only after async-graphql has executed the document once without errors, so
//!   the document passed the schema's validation (which does not depend on the variables'
//!   values beyond what [`StatusPlan::answer`] checks again: their types, and complexity);
//! - anything it is not sure of (an absent required variable, a value of another type, an
//!   error from the service, a stored value outside its enum) makes it decline, and the
//!   request runs through async-graphql as any other, which reports the error;
//! - fragments, directives, repeated response keys and every other field make the document
//!   not compile at all.
//!
//! The tests compare both answers field by field over many generated documents.

use std::collections::HashMap;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, Field, OperationType, Selection, SelectionSet,
};
use async_graphql::{Name, Positioned, Value};
use async_graphql_value::Value as ArgValue;
use chrono::{DateTime, Utc};

use super::types::{JobsArgs, int};
use crate::domain::{OrgContext, UploadJobStatus};
use crate::entity::{audience_group, audience_group_version, upload_job};
use crate::service::{JobWithAudience, Service, StatusPage, parse_id};
use crate::view::{self, Value as FieldValue};

/// An `uploadStatus` query, compiled.
#[derive(Debug)]
pub struct StatusPlan {
    /// The operation's name, if it has one.
    operation: Option<Name>,
    /// Declared variables' default values.
    defaults: HashMap<Name, Value>,
    root_key: Name,
    series: Arg,
    status: Option<Arg>,
    first: Option<Arg>,
    after: Option<Arg>,
    fields: Vec<(Name, StatusField)>,
    /// `audienceGroup` or `audienceGroupVersion` is selected under the jobs.
    audience: bool,
    /// Complexity points of one job (async-graphql's count, or more).
    job_complexity: usize,
    /// Complexity points outside the job list.
    fixed_complexity: usize,
}

/// Where an argument's value comes from.
#[derive(Debug)]
enum Arg {
    Variable(Name),
    Literal(Value),
}

#[derive(Debug)]
enum StatusField {
    Typename,
    Id,
    OrgId,
    CouponSeriesId,
    Jobs(Vec<(Name, JobField)>),
}

#[derive(Debug)]
enum JobField {
    Typename,
    /// A scalar field of `crate::view`'s list.
    Scalar(view::JobField),
    AudienceGroup(Vec<(Name, GroupField)>),
    AudienceGroupVersion(Vec<(Name, VersionField)>),
}

#[derive(Debug)]
enum GroupField {
    Typename,
    Id,
    OrgId,
    CouponSeriesId,
    Name,
    Type,
    Status,
    CustomerCount,
    CreatedOn,
    UpdatedOn,
}

#[derive(Debug)]
enum VersionField {
    Typename,
    Id,
    AudienceGroupId,
    VersionNumber,
    CustomerCount,
    Status,
    UploadJobId,
    CreatedOn,
}

/// The fields of a selection set by response key: plain fields only (no fragments, no
/// directives), each response key once.
fn plain_fields(set: &Positioned<SelectionSet>) -> Option<Vec<(&Name, &Field)>> {
    let mut out: Vec<(&Name, &Field)> = Vec::with_capacity(set.node.items.len());
    for item in &set.node.items {
        let Selection::Field(f) = &item.node else {
            return None;
        };
        let f = &f.node;
        let key = &f.response_key().node;
        if !f.directives.is_empty() || out.iter().any(|(k, _)| *k == key) {
            return None;
        }
        out.push((key, f));
    }
    Some(out)
}

/// A leaf: no arguments, no selection.
fn leaf(f: &Field) -> bool {
    f.arguments.is_empty() && f.selection_set.node.items.is_empty()
}

/// An object field without arguments: its selection.
fn object(f: &Field) -> Option<Vec<(&Name, &Field)>> {
    if !f.arguments.is_empty() || f.selection_set.node.items.is_empty() {
        return None;
    }
    plain_fields(&f.selection_set)
}

fn arg(value: &ArgValue) -> Option<Arg> {
    match value {
        ArgValue::Variable(name) => Some(Arg::Variable(name.clone())),
        other => other.clone().into_const().map(Arg::Literal),
    }
}

/// Complexity of a selection: a point per field, nested objects' fields included.
fn points<T>(fields: &[(Name, T)], nested: impl Fn(&T) -> usize) -> usize {
    fields.iter().map(|(_, f)| 1 + nested(f)).sum()
}

impl StatusPlan {
    /// The plan for `doc`, if it is an `uploadStatus` query this module can answer.
    pub fn compile(doc: &ExecutableDocument) -> Option<Self> {
        if !doc.fragments.is_empty() {
            return None;
        }
        let (operation, op) = match &doc.operations {
            DocumentOperations::Single(op) => (None, op),
            DocumentOperations::Multiple(ops) if ops.len() == 1 => {
                let (name, op) = ops.iter().next()?;
                (Some(name.clone()), op)
            }
            DocumentOperations::Multiple(_) => return None,
        };
        let op = &op.node;
        if op.ty != OperationType::Query || !op.directives.is_empty() {
            return None;
        }
        let defaults = op
            .variable_definitions
            .iter()
            .filter_map(|d| {
                let d = &d.node;
                Some((d.name.node.clone(), d.default_value.as_ref()?.node.clone()))
            })
            .collect();
        let [(root_key, root)] = plain_fields(&op.selection_set)?[..] else {
            return None;
        };
        if root.name.node != "uploadStatus" || root.arguments.len() != 1 {
            return None;
        }
        let (name, value) = &root.arguments[0];
        if name.node != "couponSeriesId" {
            return None;
        }
        let series = arg(&value.node)?;
        let mut plan = Self {
            operation,
            defaults,
            root_key: root_key.clone(),
            series,
            status: None,
            first: None,
            after: None,
            fields: Vec::new(),
            audience: false,
            job_complexity: 0,
            fixed_complexity: 1,
        };
        let mut jobs_seen = false;
        for (key, f) in plain_fields(&root.selection_set)? {
            let field = match f.name.node.as_str() {
                "__typename" if leaf(f) => StatusField::Typename,
                "id" if leaf(f) => StatusField::Id,
                "orgId" if leaf(f) => StatusField::OrgId,
                "couponSeriesId" if leaf(f) => StatusField::CouponSeriesId,
                "uploadJobStatuses" if !jobs_seen => {
                    jobs_seen = true;
                    for (name, value) in &f.arguments {
                        let value = Some(arg(&value.node)?);
                        match name.node.as_str() {
                            "status" => plan.status = value,
                            "first" => plan.first = value,
                            "after" => plan.after = value,
                            _ => return None,
                        }
                    }
                    if f.selection_set.node.items.is_empty() {
                        return None;
                    }
                    let jobs = compile_jobs(plain_fields(&f.selection_set)?)?;
                    plan.audience = jobs.iter().any(|(_, j)| {
                        matches!(
                            j,
                            JobField::AudienceGroup(_) | JobField::AudienceGroupVersion(_)
                        )
                    });
                    plan.job_complexity = points(&jobs, |j| match j {
                        JobField::AudienceGroup(g) => points(g, |_| 0),
                        JobField::AudienceGroupVersion(v) => points(v, |_| 0),
                        _ => 0,
                    });
                    StatusField::Jobs(jobs)
                }
                _ => return None,
            };
            // A point per field, the job list's own included (async-graphql's custom complexity
            // replaces it; counting it anyway never counts less).
            plan.fixed_complexity += 1;
            plan.fields.push((key.clone(), field));
        }
        jobs_seen.then_some(plan)
    }
}

/// Each field of a selection compiled by `field`; `None` if any is not known.
fn compile_each<T>(
    fields: Vec<(&Name, &Field)>,
    field: impl Fn(&Field) -> Option<T>,
) -> Option<Vec<(Name, T)>> {
    fields
        .into_iter()
        .map(|(key, f)| Some((key.clone(), field(f)?)))
        .collect()
}

fn compile_jobs(fields: Vec<(&Name, &Field)>) -> Option<Vec<(Name, JobField)>> {
    compile_each(fields, |f| {
        Some(match f.name.node.as_str() {
            "audienceGroup" => JobField::AudienceGroup(compile_group(object(f)?)?),
            "audienceGroupVersion" => JobField::AudienceGroupVersion(compile_version(object(f)?)?),
            _ if !leaf(f) => return None,
            "__typename" => JobField::Typename,
            name => JobField::Scalar(view::JobField::by_name(name)?),
        })
    })
}

fn compile_group(fields: Vec<(&Name, &Field)>) -> Option<Vec<(Name, GroupField)>> {
    compile_each(fields, |f| {
        if !leaf(f) {
            return None;
        }
        Some(match f.name.node.as_str() {
            "__typename" => GroupField::Typename,
            "id" => GroupField::Id,
            "orgId" => GroupField::OrgId,
            "couponSeriesId" => GroupField::CouponSeriesId,
            "name" => GroupField::Name,
            "type" => GroupField::Type,
            "status" => GroupField::Status,
            "customerCount" => GroupField::CustomerCount,
            "createdOn" => GroupField::CreatedOn,
            "updatedOn" => GroupField::UpdatedOn,
            _ => return None,
        })
    })
}

fn compile_version(fields: Vec<(&Name, &Field)>) -> Option<Vec<(Name, VersionField)>> {
    compile_each(fields, |f| {
        if !leaf(f) {
            return None;
        }
        Some(match f.name.node.as_str() {
            "__typename" => VersionField::Typename,
            "id" => VersionField::Id,
            "audienceGroupId" => VersionField::AudienceGroupId,
            "versionNumber" => VersionField::VersionNumber,
            "customerCount" => VersionField::CustomerCount,
            "status" => VersionField::Status,
            "uploadJobId" => VersionField::UploadJobId,
            "createdOn" => VersionField::CreatedOn,
            _ => return None,
        })
    })
}

// ---------------------------------------------------------------------------------------------
// Arguments, coerced as async-graphql coerces them; `None` declines.

impl StatusPlan {
    /// An argument's value: the literal, or the variable's value or default; `None` when absent.
    fn value<'a>(&'a self, arg: &'a Arg, request: &'a async_graphql::Request) -> Option<&'a Value> {
        match arg {
            Arg::Literal(v) => Some(v),
            Arg::Variable(name) => request
                .variables
                .get(name)
                .or_else(|| self.defaults.get(name)),
        }
    }

    /// An optional argument's value; `None` when it is not given, or absent.
    fn optional<'a>(
        &'a self,
        arg: &'a Option<Arg>,
        request: &'a async_graphql::Request,
    ) -> Option<&'a Value> {
        self.value(arg.as_ref()?, request)
    }
}

/// `ID`: a string, or an integer written as one.
fn coerce_id(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// `Int` (nullable): `Some(None)` for null or absent.
fn coerce_int(v: Option<&Value>) -> Option<Option<i32>> {
    match v {
        None | Some(Value::Null) => Some(None),
        Some(Value::Number(n)) => Some(Some(i32::try_from(n.as_i64()?).ok()?)),
        _ => None,
    }
}

/// `String` (nullable).
fn coerce_string(v: Option<&Value>) -> Option<Option<String>> {
    match v {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        _ => None,
    }
}

/// `[UploadJobStatus!]` (nullable); a single value stands for a list of one.
fn coerce_statuses(v: Option<&Value>) -> Option<Option<Vec<UploadJobStatus>>> {
    let one = |v: &Value| match v {
        Value::String(s) => UploadJobStatus::parse(s),
        Value::Enum(s) => UploadJobStatus::parse(s),
        _ => None,
    };
    match v {
        None | Some(Value::Null) => Some(None),
        Some(Value::List(items)) => Some(Some(items.iter().map(one).collect::<Option<_>>()?)),
        Some(single) => Some(Some(vec![one(single)?])),
    }
}

impl StatusPlan {
    /// The answer's JSON body (`{"data":…}`), or `None` when this request is to run through
    /// async-graphql instead.
    pub async fn answer(
        &self,
        service: &Service,
        org: &OrgContext,
        request: &async_graphql::Request,
        max_complexity: usize,
    ) -> Option<Vec<u8>> {
        if let Some(asked) = &request.operation_name
            && self.operation.as_deref() != Some(asked.as_str())
        {
            return None;
        }
        let series = coerce_id(self.value(&self.series, request)?)?;
        let series = parse_id("couponSeriesId", &series).ok()?;
        let args = JobsArgs {
            status: coerce_statuses(self.optional(&self.status, request))?,
            first: coerce_int(self.optional(&self.first, request))?,
            after: coerce_string(self.optional(&self.after, request))?,
        };
        let page = args.page().ok()?;
        let complexity = crate::graphql::list_complexity(args.first, self.job_complexity)
            .saturating_add(self.fixed_complexity);
        if complexity > max_complexity {
            return None;
        }
        let found = service
            .upload_status_page(org, series, args.status.as_deref(), page, self.audience)
            .await
            .ok()?;
        let mut out = Json(Vec::with_capacity(256 + found.jobs.len() * 1024));
        out.raw(b"{\"data\":{");
        out.key(&self.root_key);
        self.write_status(&mut out, service, &found)?;
        out.raw(b"}}");
        Some(out.0)
    }

    fn write_status(&self, out: &mut Json, service: &Service, found: &StatusPage) -> Option<()> {
        out.object(&self.fields, |out, field| {
            match field {
                StatusField::Typename => out.str("UploadStatus"),
                StatusField::Id | StatusField::CouponSeriesId => out.id(found.status.series.id),
                StatusField::OrgId => out.id(found.status.org_id),
                StatusField::Jobs(fields) => {
                    return out.list(&found.jobs, |out, job| write_job(out, service, job, fields));
                }
            }
            Some(())
        })
    }
}

fn write_job(
    out: &mut Json,
    service: &Service,
    jwa: &JobWithAudience,
    fields: &[(Name, JobField)],
) -> Option<()> {
    let job: &upload_job::Model = &jwa.job;
    out.object(fields, |out, field| {
        match field {
            JobField::Typename => out.str("UploadJob"),
            JobField::Scalar(f) => out.value(f.get(job), service),
            JobField::AudienceGroup(fields) => match (&job.audience_group_id, &jwa.group) {
                (Some(_), Some(g)) => return write_group(out, g, fields),
                _ => out.null(),
            },
            JobField::AudienceGroupVersion(fields) => {
                match (&job.audience_group_version_id, &jwa.version) {
                    (Some(_), Some(v)) => return write_version(out, v, fields),
                    _ => out.null(),
                }
            }
        }
        Some(())
    })
}

fn write_group(
    out: &mut Json,
    g: &audience_group::Model,
    fields: &[(Name, GroupField)],
) -> Option<()> {
    out.object(fields, |out, field| {
        match field {
            GroupField::Typename => out.str("AudienceGroup"),
            GroupField::Id => out.id(g.id),
            GroupField::OrgId => out.id(g.org_id),
            GroupField::CouponSeriesId => out.id(g.coupon_series_id),
            GroupField::Name => out.str(&g.name),
            GroupField::Type => out.str(g.group_type.as_str()),
            GroupField::Status => out.str(g.status.as_str()),
            GroupField::CustomerCount => out.int(int(g.customer_count)),
            GroupField::CreatedOn => out.time(&g.created_on),
            GroupField::UpdatedOn => out.time(&g.updated_on),
        }
        Some(())
    })
}

fn write_version(
    out: &mut Json,
    v: &audience_group_version::Model,
    fields: &[(Name, VersionField)],
) -> Option<()> {
    out.object(fields, |out, field| {
        match field {
            VersionField::Typename => out.str("AudienceGroupVersion"),
            VersionField::Id => out.id(v.id),
            VersionField::AudienceGroupId => out.id(v.audience_group_id),
            VersionField::VersionNumber => out.int(v.version_number),
            VersionField::CustomerCount => out.int(int(v.customer_count)),
            VersionField::Status => out.str(v.status.as_str()),
            VersionField::UploadJobId => out.opt_id(v.upload_job_id),
            VersionField::CreatedOn => out.time(&v.created_on),
        }
        Some(())
    })
}

/// JSON written as serde_json writes async-graphql's response (same string escaping).
struct Json(Vec<u8>);

impl Json {
    /// `{"key":value,…}` for each field by its response key; `None` (decline) from any value.
    fn object<T>(
        &mut self,
        fields: &[(Name, T)],
        mut value: impl FnMut(&mut Self, &T) -> Option<()>,
    ) -> Option<()> {
        self.0.push(b'{');
        for (i, (key, field)) in fields.iter().enumerate() {
            if i > 0 {
                self.0.push(b',');
            }
            self.key(key);
            value(self, field)?;
        }
        self.0.push(b'}');
        Some(())
    }

    /// `[item,…]`.
    fn list<T>(
        &mut self,
        items: &[T],
        mut item: impl FnMut(&mut Self, &T) -> Option<()>,
    ) -> Option<()> {
        self.0.push(b'[');
        for (i, it) in items.iter().enumerate() {
            if i > 0 {
                self.0.push(b',');
            }
            item(self, it)?;
        }
        self.0.push(b']');
        Some(())
    }

    fn raw(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        // Writing to a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.0, s);
    }
    fn key(&mut self, k: &str) {
        self.str(k);
        self.0.push(b':');
    }
    fn null(&mut self) {
        self.raw(b"null");
    }
    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            Some(s) => self.str(s),
            None => self.null(),
        }
    }
    fn id(&mut self, n: i64) {
        self.0.push(b'"');
        self.raw(itoa::Buffer::new().format(n).as_bytes());
        self.0.push(b'"');
    }
    fn opt_id(&mut self, n: Option<i64>) {
        match n {
            Some(n) => self.id(n),
            None => self.null(),
        }
    }
    fn int(&mut self, n: i32) {
        self.raw(itoa::Buffer::new().format(n).as_bytes());
    }
    fn opt_int(&mut self, n: Option<i32>) {
        match n {
            Some(n) => self.int(n),
            None => self.null(),
        }
    }
    fn bool(&mut self, b: bool) {
        self.raw(if b { b"true" } else { b"false" });
    }
    fn time(&mut self, t: &DateTime<Utc>) {
        self.str(&t.to_rfc3339());
    }
    /// A job field's value as GraphQL writes it (`crate::view`).
    fn value(&mut self, v: FieldValue<'_>, service: &Service) {
        match v {
            FieldValue::Id(n) => self.id(n),
            FieldValue::OptId(n) => self.opt_id(n),
            FieldValue::Count(n) => self.int(int(n)),
            FieldValue::OptInt(n) => self.opt_int(n),
            FieldValue::Bool(b) => self.bool(b),
            FieldValue::Str(s) => self.str(s),
            FieldValue::OptStr(s) => self.opt_str(s),
            FieldValue::Time(t) => self.time(t),
            FieldValue::File(key) => self.opt_str(service.file_url(key).as_deref()),
            FieldValue::Status(s) => self.str(s.as_str()),
            FieldValue::Identifier(c) => self.str(c.as_str()),
        }
    }
}
