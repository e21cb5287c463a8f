" Headless Vim: write, for every line of the current file, the syntax group
" (untranslated and translated) of each character, as JSON, to $OUT.
filetype on
syntax on
edit
let s:out = []
for s:lnum in range(1, line('$'))
  let s:row = []
  let s:len = strlen(getline(s:lnum))
  for s:col in range(1, s:len)
    let s:id = synID(s:lnum, s:col, 1)
    call add(s:row, [synIDattr(s:id, 'name'), synIDattr(synIDtrans(s:id), 'name')])
  endfor
  call add(s:out, s:row)
endfor
call writefile([json_encode({'filetype': &filetype, 'syntax': get(b:, 'current_syntax', ''), 'lines': s:out})], $OUT)
qa!
