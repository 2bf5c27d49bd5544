from django import forms

from microblog.core.errors import form_clean
from microblog.core.ids import MAX_ID
from microblog.posts.models import CONTENT_MAX_LENGTH
from microblog.posts.services import PARENT_MISSING, post_content_clean


class PostForm(forms.Form):
    content = forms.CharField(
        label="What's happening?",
        strip=False,
        widget=forms.Textarea(
            attrs={"rows": 3, "data-counter": CONTENT_MAX_LENGTH, "placeholder": "What's new?"}
        ),
        error_messages={"required": "Write something: the post cannot be empty."},
    )
    parent_id = forms.IntegerField(
        required=False,
        widget=forms.HiddenInput,
        min_value=1,
        max_value=MAX_ID,
        error_messages={
            "invalid": PARENT_MISSING,
            "min_value": PARENT_MISSING,
            "max_value": PARENT_MISSING,
        },
    )

    def clean_content(self) -> str:
        return form_clean(post_content_clean, self.cleaned_data["content"])
