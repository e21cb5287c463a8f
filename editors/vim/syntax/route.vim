" Vim syntax file
" Language:   routelang (AI-inference request routing rules)
" Filenames:  *.route
"
" Keywords are `syntax match` items rather than `syntax keyword` so that they
" are not highlighted as path segments (`request.model`) or object keys
" (`request: {...}`), and so that names may contain dashes.

if exists('b:current_syntax')
  finish
endif

let s:cpo_save = &cpo
set cpo&vim

syntax case match
syntax sync minlines=50

" ---- plain names (lowest priority: defined first) ----------------------------
syntax match routeName /[A-Za-z0-9_.-]\@<!\h[A-Za-z0-9_-]*/

" ---- keywords ------------------------------------------------------------------
" Not after `.` or a name character; not before a name character, `.` or `:`.
let s:before = '[A-Za-z0-9_.-]\@<!'
let s:after = '\%([A-Za-z0-9_-]\|\s*[.:]\)\@!'

function! s:Keywords(group, words) abort
  execute 'syntax match ' . a:group . ' /' . s:before . '\%(' . join(a:words, '\|') . '\)' . s:after . '/'
endfunction

call s:Keywords('routeDeclaration',
      \ ['router', 'metadata', 'import', 'provider', 'profile', 'defaults', 'target', 'condition',
      \  'schema', 'rule', 'test', 'workspace', 'agent'])
call s:Keywords('routeConditional', ['when'])
call s:Keywords('routeStrategy',
      \ ['route', 'shadow', 'split', 'sticky', 'by', 'salt', 'failover', 'fallback', 'round_robin',
      \  'least_latency', 'lowest_cost', 'hybrid'])
call s:Keywords('routeSetting',
      \ ['priority', 'model', 'endpoint', 'weight', 'label', 'timeout', 'retries', 'headers',
      \  'function_name', 'request_class', 'is_shadow', 'circuit_breaker', 'failures', 'cooldown',
      \  'successes', 'health_check', 'path', 'interval', 'use', 'cost', 'per', 'latency',
      \  'reliability', 'input_cost', 'output_cost', 'capabilities', 'compliance', 'tags', 'budget',
      \  'limit', 'allow', 'providers', 'prefer', 'require', 'success', 'otherwise', 'serve', 'best',
      \  'refuse', 'timezone', 'USD', 'requests', 'tokens', 'second', 'minute', 'hour', 'day', 'week',
      \  'month'])
call s:Keywords('routeLogical', ['and', 'or', 'not'])
call s:Keywords('routeWordOperator',
      \ ['in', 'contains', 'starts_with', 'ends_with', 'exists', 'matches', 'note'])
call s:Keywords('routeTestKeyword', ['request', 'expect', 'no', 'match', 'targets'])
call s:Keywords('routeModifier', ['enabled', 'disabled'])
call s:Keywords('routeType',
      \ ['string', 'number', 'integer', 'bool', 'list', 'object', 'any', 'enum'])
call s:Keywords('routeBoolean', ['true', 'false'])
call s:Keywords('routeNull', ['null'])
" `cost 0.002 per 1k`
syntax match routeUnit /\%(\<per\s\+\)\@<=1k[A-Za-z0-9_-]\@!/

" ---- names and paths -----------------------------------------------------------
" Field paths: user.tier, request.model (segments may be keywords).
syntax match routeField /[A-Za-z0-9_.-]\@<!\h[A-Za-z0-9_-]*\ze\s*\.\s*[A-Za-z_"]/
syntax match routeField /\.\@<=\h[A-Za-z0-9_-]*/
" A one-segment field followed by a comparison.
syntax match routeField /[A-Za-z0-9_.-]\@<!\%(\%(and\|or\|not\|when\)[A-Za-z0-9_-]\@!\)\@!\h[A-Za-z0-9_-]*\ze\%(\s*\%(==\|!=\|>=\|<=\|=\~\|>\|<\)\|\s\+\%(in\|contains\|starts_with\|ends_with\|matches\|exists\|not\s\+\%(in\|contains\|exists\)\)[A-Za-z0-9_-]\@!\)/
" A requirement's words, which look like a field compared: `success >= 95%` (conditions take no
" percentages), `cost per 1k tokens <= 0.01`.
syntax match routeSetting /[A-Za-z0-9_.-]\@<!success\ze\s*>=\s*\d\+\%(\.\d\+\)\=%/
syntax match routeSetting /\%(\<1k\s\+\)\@<=tokens[A-Za-z0-9_-]\@!/
" Object keys, schema fields and split labels: `name:`.
syntax match routeKey /[A-Za-z0-9_.-]\@<!\h[A-Za-z0-9_-]*\ze\s*:/
" Provider preset calls: modal("model", "https://...").
syntax match routeCall /[A-Za-z0-9_.-]\@<!\%(\%(and\|or\|not\|in\|when\|hybrid\|enum\)[A-Za-z0-9_-]\@!\)\@!\h[A-Za-z0-9_-]*\ze\s*(/

" Names introduced by definitions.
syntax match routeRouterName /\%(\<router\s\+\)\@<=\h[A-Za-z0-9_-]*/
syntax match routeModuleName /\%(\<import\s\+\)\@<=\h[A-Za-z0-9_-]*\%(\.\h[A-Za-z0-9_-]*\)*/
syntax match routeProviderName /\%(\<provider\s\+\)\@<=\h[A-Za-z0-9_-]*/
syntax match routeProfileName /\%(\<\%(profile\|use\)\s\+\)\@<=\h[A-Za-z0-9_-]*/
syntax match routeTargetName /\%(\<target\s\+\)\@<=\h[A-Za-z0-9_-]*\ze\s*=[=~]\@!/
syntax match routeConditionName /\%(\<condition\s\+\)\@<=\h[A-Za-z0-9_-]*\ze\s*=[=~]\@!/
syntax match routeRuleName /\%(\<rule\s\+\)\@<=\h[A-Za-z0-9_-]*/

" ---- numbers (most specific last: it wins at the same position) -----------------
syntax match routeNumber /[A-Za-z0-9_.-]\@<!-\=\%(\d\+\%(\.\d*\)\=\|\.\d\+\)\%([eE][-+]\=\d\+\)\=[A-Za-z0-9_-]\@!/
" A limit's quantity: `200k tokens per minute`, `2M` (not the unit of `per 1k`).
syntax match routeNumber /\%(\<per\s\+\)\@<![A-Za-z0-9_.-]\@<!\d\+\%(\.\d\+\)\=[kM][A-Za-z0-9_-]\@!/
syntax match routeDuration /[A-Za-z0-9_.-]\@<!\d\+\%(\.\d\+\)\=\%(ms\|s\|m\|h\)[A-Za-z0-9_-]\@!/
syntax match routePercent /[A-Za-z0-9_.-]\@<!\d\+\%(\.\d\+\)\=%/

" ---- operators and punctuation ---------------------------------------------------
syntax match routeOperator /=\~\|==\|!=\|>=\|<=\|[<>=]/
syntax match routeDelimiter /[{}()[\],:.]/

" ---- strings -----------------------------------------------------------------------
syntax match routeEscape /\\\%(u\x\{4}\|U\x\{8}\|x\x\x\|.\)/ contained
syntax match routeInterpolation /\${\h\w*\%(:-[^}"]*\)\=}/ contained
syntax region routeString start=/"/ skip=/\\\\\|\\"/ end=/"\|$/ oneline
      \ contains=routeEscape,routeInterpolation,@Spell
syntax region routeRawString start=/[A-Za-z0-9_.-]\@<!r"/ end=/"\|$/ oneline
      \ contains=routeInterpolation
" `rule "quoted name"`: the string is the rule's name.
syntax region routeRuleNameString start=/\%(\<rule\s\+\)\@<="/ skip=/\\\\\|\\"/ end=/"\|$/ oneline
      \ contains=routeEscape,routeInterpolation

" ---- comments (highest priority: defined last) --------------------------------------
syntax keyword routeTodo TODO FIXME XXX NOTE contained
syntax match routeComment /#.*$/ contains=routeTodo,@Spell

" ---- highlight links ----------------------------------------------------------------
hi def link routeComment        Comment
hi def link routeTodo           Todo
hi def link routeString         String
hi def link routeRawString      String
hi def link routeRuleNameString Function
hi def link routeEscape         SpecialChar
hi def link routeInterpolation  PreProc
hi def link routeNumber         Number
hi def link routeDuration       Number
hi def link routePercent        Number
hi def link routeUnit           Special
hi def link routeDeclaration    Keyword
hi def link routeConditional    Conditional
hi def link routeStrategy       Statement
hi def link routeSetting        Label
hi def link routeLogical        Operator
hi def link routeWordOperator   Operator
hi def link routeTestKeyword    Keyword
hi def link routeModifier       StorageClass
hi def link routeType           Type
hi def link routeBoolean        Boolean
hi def link routeNull           Constant
hi def link routeOperator       Operator
hi def link routeDelimiter      Delimiter
hi def link routeField          Identifier
hi def link routeKey            Identifier
hi def link routeCall           Function
hi def link routeRouterName     Function
hi def link routeModuleName     Include
hi def link routeProviderName   Function
hi def link routeProfileName    Function
hi def link routeTargetName     Function
hi def link routeConditionName  Function
hi def link routeRuleName       Function

let b:current_syntax = 'route'

let &cpo = s:cpo_save
unlet s:cpo_save
